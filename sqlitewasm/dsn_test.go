package sqlitewasm

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/sqlitewasm/internal/memdb"
)

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn    string
		memory bool
		path   string
		query  url.Values
	}{
		{dsn: "sqlite::memory:", memory: true},
		{dsn: "sqlite://:memory:", memory: true},
		{dsn: ":memory:", memory: true},
		{dsn: "file::memory:", memory: true},
		{dsn: "file::memory:?cache=shared", memory: true},
		{dsn: "file:sessions?mode=memory&cache=shared", memory: true},
		{dsn: "sqlite://sessions.db", path: "sessions.db"},
		{dsn: "sqlite://data/s.db", path: "data/s.db"},
		{dsn: "sqlite:///var/lib/app/s.db", path: "/var/lib/app/s.db"},
		{dsn: "sqlite:s.db", path: "s.db"},
		{dsn: "sqlite://my%20data.db?mode=rwc", path: "my data.db", query: url.Values{"mode": {"rwc"}}},
		{dsn: "sqlite://s.db?_pragma=cache_size(-2000)", path: "s.db", query: url.Values{"_pragma": {"cache_size(-2000)"}}},
		{dsn: "sessions.db", path: "sessions.db"},
		{dsn: "/tmp/x?y.db", path: "/tmp/x?y.db"},
		{dsn: "file:s.db?mode=rwc", path: "s.db", query: url.Values{"mode": {"rwc"}}},
		{dsn: "file:///abs/s.db", path: "/abs/s.db"},
		{dsn: "file://localhost/abs/s.db", path: "/abs/s.db"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			got, err := parseDSN(tt.dsn)
			if err != nil {
				t.Fatalf("parseDSN(%q): %v", tt.dsn, err)
			}
			if got.memory != tt.memory || got.path != tt.path {
				t.Errorf("parseDSN(%q) = memory %v path %q, want memory %v path %q", tt.dsn, got.memory, got.path, tt.memory, tt.path)
			}
			want := tt.query
			if want == nil {
				want = url.Values{}
			}
			if !reflect.DeepEqual(got.query, want) {
				t.Errorf("parseDSN(%q) query = %v, want %v", tt.dsn, got.query, want)
			}
		})
	}
}

func TestParseDSNErrors(t *testing.T) {
	tests := []struct {
		dsn     string
		mention string // the message must say this
		hide    string // and must not say this
	}{
		{dsn: "", mention: "empty"},
		{dsn: "   ", mention: "empty"},
		{dsn: "postgres://postgres:s3cret@localhost/test", mention: "postgres URL", hide: "s3cret"},
		{dsn: "mysql://root@localhost/test", mention: "mysql URL"},
		{dsn: "sqlite://", mention: "names no file"},
		{dsn: "sqlite:?mode=rwc", mention: "names no file"},
		{dsn: "sqlite://a%zz.db", mention: "a%zz.db"},
		{dsn: "file://otherhost/x.db", mention: "authority"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			_, err := parseDSN(tt.dsn)
			if !errors.Is(err, ErrUnsupportedDSN) {
				t.Fatalf("parseDSN(%q) error = %v, want ErrUnsupportedDSN", tt.dsn, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if tt.hide != "" && strings.Contains(err.Error(), tt.hide) {
				t.Errorf("error %q leaks %q", err, tt.hide)
			}
		})
	}
}

// TestURI pins the pragmas and parameters given to the driver, including the
// branches for builds without file locking or shared memory (wasip1 and js
// without sqlite3_dotlk), which the native test run cannot reach otherwise.
func TestURI(t *testing.T) {
	cfg := func(opts ...Option) *config {
		c := &config{maxOpenConns: DefaultMaxOpenConns, busyTimeout: DefaultBusyTimeout}
		for _, o := range opts {
			o(c)
		}
		return c
	}
	tests := []struct {
		name        string
		dsn         string
		cfg         *config
		locks, shm  bool
		wantPath    string
		wantPragmas []string
		wantParams  url.Values // besides _pragma
		wantSingle  bool
	}{
		{
			name: "file", dsn: "sqlite://s.db", cfg: cfg(), locks: true, shm: true,
			wantPath:    "s.db",
			wantPragmas: []string{"busy_timeout(10000)", "journal_mode(wal)", "synchronous(normal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"immediate"}},
		},
		{
			name: "memory", dsn: "sqlite::memory:", cfg: cfg(), locks: true, shm: true,
			wantPath:    "/mem",
			wantPragmas: []string{"busy_timeout(10000)"},
			wantParams:  url.Values{"_txlock": {"immediate"}, "vfs": {memdb.VFSName}},
		},
		{
			name: "user pragmas keep busy_timeout", dsn: "file:s.db?_pragma=cache_size(-2000)&_txlock=deferred",
			cfg: cfg(WithBusyTimeout(2500*time.Millisecond), WithPragma("journal_mode(delete)")), locks: true, shm: true,
			wantPath:    "s.db",
			wantPragmas: []string{"busy_timeout(2500)", "cache_size(-2000)", "journal_mode(delete)", "synchronous(normal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"deferred"}},
		},
		{
			name: "key first", dsn: "sqlite://s.db?vfs=adiantum", cfg: cfg(WithPragma("textkey('k')"), WithPragma("synchronous = full")), locks: true, shm: true,
			wantPath:    "s.db",
			wantPragmas: []string{"textkey('k')", "busy_timeout(10000)", "synchronous = full", "journal_mode(wal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"immediate"}, "vfs": {"adiantum"}},
		},
		{
			name: "sub-millisecond busy timeout", dsn: "sqlite::memory:", cfg: cfg(WithBusyTimeout(time.Microsecond)), locks: true, shm: true,
			wantPath:    "/mem",
			wantPragmas: []string{"busy_timeout(1)"},
			wantParams:  url.Values{"_txlock": {"immediate"}, "vfs": {memdb.VFSName}},
		},
		{
			name: "journal_size_limit from the DSN", dsn: "sqlite://s.db?_pragma=journal_size_limit(-1)", cfg: cfg(), locks: true, shm: true,
			wantPath:    "s.db",
			wantPragmas: []string{"busy_timeout(10000)", "journal_size_limit(-1)", "journal_mode(wal)", "synchronous(normal)"},
			wantParams:  url.Values{"_txlock": {"immediate"}},
		},
		{
			name: "no file locking", dsn: "sqlite://s.db", cfg: cfg(), locks: false, shm: false,
			wantPath:    "s.db",
			wantPragmas: []string{"busy_timeout(10000)", "synchronous(normal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"immediate"}, "nolock": {"1"}},
			wantSingle:  true,
		},
		{
			name: "locks without shared memory", dsn: "sqlite://s.db", cfg: cfg(), locks: true, shm: false,
			wantPath:    "s.db",
			wantPragmas: []string{"busy_timeout(10000)", "locking_mode(exclusive)", "journal_mode(wal)", "synchronous(normal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"immediate"}},
			wantSingle:  true,
		},
		{
			name: "memory without locking", dsn: "sqlite::memory:", cfg: cfg(), locks: false, shm: false,
			wantPath:    "/mem",
			wantPragmas: []string{"busy_timeout(10000)"},
			wantParams:  url.Values{"_txlock": {"immediate"}, "vfs": {memdb.VFSName}},
		},
		{
			name: "absolute path with odd characters", dsn: "/tmp/a b?c#d.db", cfg: cfg(), locks: true, shm: true,
			wantPath:    "/tmp/a b?c#d.db",
			wantPragmas: []string{"busy_timeout(10000)", "journal_mode(wal)", "synchronous(normal)", "journal_size_limit(16777216)"},
			wantParams:  url.Values{"_txlock": {"immediate"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := parseDSN(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			raw, single := tg.uri(tt.cfg, "mem", tt.locks, tt.shm)
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("uri %q does not parse: %v", raw, err)
			}
			if u.Scheme != "file" || u.Host != "" {
				t.Errorf("uri %q: want a file: URI without authority", raw)
			}
			p := u.Path
			if p == "" {
				p = u.Opaque
			}
			if p != tt.wantPath {
				t.Errorf("uri %q: path %q, want %q", raw, p, tt.wantPath)
			}
			q := u.Query()
			if got := q["_pragma"]; !reflect.DeepEqual(got, tt.wantPragmas) {
				t.Errorf("uri %q: pragmas %q, want %q", raw, got, tt.wantPragmas)
			}
			q.Del("_pragma")
			if !reflect.DeepEqual(q, tt.wantParams) {
				t.Errorf("uri %q: params %v, want %v", raw, q, tt.wantParams)
			}
			if single != tt.wantSingle {
				t.Errorf("uri %q: single = %v, want %v", raw, single, tt.wantSingle)
			}
		})
	}
}

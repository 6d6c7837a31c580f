package sqlitewasm_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3/vfs"
	"github.com/uptrace/bun"

	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

// fileConns and fileJournal are what Open gives a file database on this
// build: builds without file locking (wasip1 and js without the
// sqlite3_dotlk tag) get one connection and the rollback journal.
var (
	fileConns   = sqlitewasm.DefaultMaxOpenConns
	fileJournal = "wal"
)

func init() {
	if !vfs.SupportsFileLocking {
		fileConns, fileJournal = 1, "delete"
	}
}

func mustOpen(t *testing.T, dsn string, opts ...sqlitewasm.Option) *bun.DB {
	t.Helper()
	db, err := sqlitewasm.Open(dsn, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// conns takes n connections out of the pool at once, so that each is a
// distinct connection, and returns them to the pool at cleanup.
func conns(t *testing.T, db *bun.DB, n int) []*sql.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := make([]*sql.Conn, n)
	for i := range cs {
		c, err := db.DB.Conn(ctx)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, n, err)
		}
		cs[i] = c
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs
}

func pragma(t *testing.T, c *sql.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestFileDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"sqlite://" + filepath.ToSlash(filepath.Join(dir, "abs.db")),
		"sqlite://rel.db",
		"sqlite:short.db",
		"plain.db",
		"file:uri.db?mode=rwc",
	} {
		t.Run(dsn, func(t *testing.T) {
			db := mustOpen(t, dsn)
			// Every pooled connection, not just the first, has the defaults.
			for i, c := range conns(t, db, fileConns) {
				if got := pragma(t, c, "journal_mode"); got != fileJournal {
					t.Errorf("conn %d: journal_mode = %q, want %s", i, got, fileJournal)
				}
				if got := pragma(t, c, "synchronous"); got != "1" {
					t.Errorf("conn %d: synchronous = %q, want 1 (NORMAL)", i, got)
				}
				if got := pragma(t, c, "busy_timeout"); got != "10000" {
					t.Errorf("conn %d: busy_timeout = %q, want 10000", i, got)
				}
				if got, want := pragma(t, c, "journal_size_limit"), fmt.Sprint(sqlitewasm.DefaultJournalSizeLimit); got != want {
					t.Errorf("conn %d: journal_size_limit = %q, want %s", i, got, want)
				}
			}
			if got := db.DB.Stats().MaxOpenConnections; got != fileConns {
				t.Errorf("MaxOpenConnections = %d, want %d", got, fileConns)
			}
		})
	}
	// A relative path is pinned at Open: connections opened after a chdir
	// still reach the same file.
	db := mustOpen(t, "sqlite://pinned.db")
	if _, err := db.ExecContext(context.Background(), `CREATE TABLE pinned (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	for i, c := range conns(t, db, fileConns) {
		var n int
		if err := c.QueryRowContext(context.Background(), `SELECT count(*) FROM pinned`).Scan(&n); err != nil {
			t.Errorf("conn %d after chdir: %v", i, err)
		}
	}
	for _, name := range []string{"abs.db", "rel.db", "short.db", "plain.db", "uri.db", "pinned.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("database file %s was not created where expected: %v", name, err)
		}
	}
}

// TestIdleConnsKept checks MaxIdleConns = MaxOpenConns: database/sql would
// otherwise keep 2 and close the rest, with their prepared statements.
func TestIdleConnsKept(t *testing.T) {
	for _, n := range []int{sqlitewasm.DefaultMaxOpenConns, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			db := mustOpen(t, "sqlite::memory:", sqlitewasm.WithMaxOpenConns(n))
			cs := conns(t, db, n)
			for _, c := range cs {
				c.Close()
			}
			st := db.DB.Stats()
			if st.MaxOpenConnections != n || st.Idle != n {
				t.Errorf("stats: MaxOpenConnections %d, Idle %d; want %d and %d", st.MaxOpenConnections, st.Idle, n, n)
			}
		})
	}
}

// TestBusyTimeoutAlwaysSet covers the driver's trap: any _pragma in the DSN
// makes it skip its own busy timeout, leaving 0.
func TestBusyTimeoutAlwaysSet(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		dsn     string
		opts    []sqlitewasm.Option
		timeout string
		journal string
	}{
		{dsn: "file:" + filepath.ToSlash(filepath.Join(dir, "a.db")) + "?_pragma=cache_size(-1000)", timeout: "10000", journal: fileJournal},
		{dsn: "sqlite://" + filepath.ToSlash(filepath.Join(dir, "b.db")), opts: []sqlitewasm.Option{sqlitewasm.WithBusyTimeout(2500 * time.Millisecond)}, timeout: "2500", journal: fileJournal},
		{dsn: "sqlite://" + filepath.ToSlash(filepath.Join(dir, "c.db")), opts: []sqlitewasm.Option{sqlitewasm.WithPragma("journal_mode(delete)"), sqlitewasm.WithBusyTimeout(0)}, timeout: "10000", journal: "delete"},
		{dsn: "sqlite::memory:", opts: []sqlitewasm.Option{sqlitewasm.WithPragma("cache_size(-1000)")}, timeout: "10000", journal: "memory"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			db := mustOpen(t, tt.dsn, tt.opts...)
			for i, c := range conns(t, db, min(2, db.DB.Stats().MaxOpenConnections)) {
				if got := pragma(t, c, "busy_timeout"); got != tt.timeout {
					t.Errorf("conn %d: busy_timeout = %q, want %q", i, got, tt.timeout)
				}
				if got := pragma(t, c, "journal_mode"); got != tt.journal {
					t.Errorf("conn %d: journal_mode = %q, want %q", i, got, tt.journal)
				}
				if strings.Contains(tt.dsn, "cache_size") || len(tt.opts) > 0 && tt.journal == "memory" {
					if got := pragma(t, c, "cache_size"); got != "-1000" {
						t.Errorf("conn %d: cache_size = %q, want -1000 (the caller's pragma)", i, got)
					}
				}
			}
		})
	}
}

// TestMemoryIsOneDatabase checks that every pooled connection of an
// in-memory database sees the same data, and that two Opens do not.
func TestMemoryIsOneDatabase(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, "sqlite::memory:")
	cs := conns(t, db, sqlitewasm.DefaultMaxOpenConns)
	if _, err := cs[0].ExecContext(ctx, `CREATE TABLE t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[1].ExecContext(ctx, `INSERT INTO t VALUES ('shared')`); err != nil {
		t.Fatalf("second connection cannot see the first's table: %v", err)
	}
	for i, c := range cs {
		var v string
		if err := c.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != "shared" {
			t.Errorf("conn %d: got %q, %v; want the shared row", i, v, err)
		}
	}

	other := mustOpen(t, "sqlite::memory:")
	var n int
	err := other.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 't'`).Scan(&n)
	if err != nil || n != 0 {
		t.Errorf("a second Open sees the first database's table (count %d, err %v); each Open must be private", n, err)
	}
}

// TestMemorySurvivesIdleConnections: the in-memory database lives as long as
// the *bun.DB, even when every connection has been closed meanwhile.
func TestMemorySurvivesIdleConnections(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, "sqlite::memory:")
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	db.DB.SetMaxIdleConns(0) // closes every idle connection now
	if got := db.DB.Stats().OpenConnections; got != 0 {
		t.Fatalf("OpenConnections = %d after SetMaxIdleConns(0), want 0", got)
	}
	var v int
	if err := db.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after all connections closed: got %d, %v; want 42", v, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "text.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dsn  string
		want string
	}{
		{dsn: "sqlite://" + filepath.ToSlash(filepath.Join(dir, "missing", "dir", "s.db")), want: "unable to open"},
		{dsn: "sqlite://" + filepath.ToSlash(notDB), want: "not a database"},
		{dsn: "sqlite://" + filepath.ToSlash(filepath.Join(dir, "ro.db")) + "?mode=ro", want: "unable to open"},
		{dsn: "sqlite://s.db?_txlock=sometimes", want: "_txlock"},
		{dsn: "postgres://localhost/test", want: "not SQLite"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			db, err := sqlitewasm.Open(tt.dsn)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.dsn)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%q) error %q, want it to mention %q", tt.dsn, err, tt.want)
			}
		})
	}
	if _, err := sqlitewasm.Open(""); !errors.Is(err, sqlitewasm.ErrUnsupportedDSN) {
		t.Errorf("Open(\"\") error = %v, want ErrUnsupportedDSN", err)
	}
}

// TestConcurrentWriters: 32 goroutines x 200 upserts on one file database,
// plus read-modify-write transactions, must never see "database is locked".
func TestConcurrentWriters(t *testing.T) {
	const goroutines, writes = 32, 200
	ctx := context.Background()
	db := mustOpen(t, "sqlite://"+filepath.ToSlash(filepath.Join(t.TempDir(), "busy.db")))
	if _, err := db.ExecContext(ctx, `CREATE TABLE counter (k INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB)`); err != nil {
		t.Fatal(err)
	}
	upsert, err := db.DB.PrepareContext(ctx, `INSERT INTO counter (k, n, data) VALUES (?, 1, ?) ON CONFLICT (k) DO UPDATE SET n = n + 1, data = excluded.data`)
	if err != nil {
		t.Fatal(err)
	}
	defer upsert.Close()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		record = func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	)
	blob := make([]byte, 512)
	for g := range goroutines {
		wg.Go(func() {
			for i := range writes {
				k := (g*writes + i) % 16 // 16 hot rows shared by everyone
				if i%4 == 3 {
					// A transaction that reads, then writes: with a deferred
					// BEGIN two of these dead-end in SQLITE_BUSY.
					if err := readModifyWrite(ctx, db, k); err != nil {
						record(fmt.Errorf("goroutine %d tx %d: %w", g, i, err))
					}
					continue
				}
				if _, err := upsert.ExecContext(ctx, k, blob); err != nil {
					record(fmt.Errorf("goroutine %d write %d: %w", g, i, err))
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d writes failed; first: %v", len(errs), goroutines*writes, errs[0])
	}
	var total int
	if err := db.QueryRowContext(ctx, `SELECT sum(n) FROM counter`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != goroutines*writes {
		t.Errorf("sum of counters = %d, want %d (lost updates)", total, goroutines*writes)
	}
}

func readModifyWrite(ctx context.Context, db *bun.DB, k int) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT n FROM counter WHERE k = ?`, k).Scan(&n)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO counter (k, n) VALUES (?, 1)`, k)
			return err
		case err != nil:
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE counter SET n = ? WHERE k = ?`, n+1, k)
		return err
	})
}

package dbtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// PgBouncerPath is where Debian's pgbouncer package installs the binary;
// PgBouncer looks there first, then in PATH.
const PgBouncerPath = "/usr/sbin/pgbouncer"

// PgBouncerURL starts a PgBouncer in transaction pooling mode in front of
// the PostgreSQL server of serverURL (a postgres:// URL, e.g. PostgresURL()
// or a fresh database's) and returns serverURL with its host and port
// replaced by PgBouncer's: the same user, database and parameters, one
// pooler in between. Add the driver settings PgBouncer needs yourself (for
// pgx: default_query_exec_mode=exec).
//
// PgBouncer runs as a child process of the test, listening on a free
// loopback port, with its configuration in a temporary directory; it logs
// to a buffer shown when the test fails, and is stopped when the test ends
// (on Linux also when the test process dies without cleaning up).
// It connects to the server as serverURL's user (and password) whatever
// user a client names (auth_type=any), so it needs no user list.
//
// Without a pgbouncer binary the test is skipped, unless CI is set: then it
// fails.
func PgBouncerURL(t testing.TB, serverURL string) string {
	t.Helper()
	if noSockets {
		t.Skipf("PgBouncer: a %s module cannot start processes or open network connections, skipping", runtime.GOOS)
	}
	bin := pgBouncerBin(t)
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("PgBouncer: %s is not a postgres:// URL (%v)", dburl.EnvPostgres, err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	server := "host=" + connValue(host) + " port=" + connValue(port)
	if u.User != nil {
		server += " user=" + connValue(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			server += " password=" + connValue(pw)
		}
	} else {
		server += " user=postgres"
	}

	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeLoopbackPort()
		if err != nil {
			t.Fatalf("PgBouncer: finding a free port: %v", err)
		}
		p, err := startPgBouncer(t, bin, dir, server, addr)
		if err != nil {
			lastErr = err
			continue // most likely the port was taken meanwhile
		}
		t.Cleanup(p.stop)
		out := *u
		out.Host = addr
		return out.String()
	}
	t.Fatalf("PgBouncer did not start: %v", lastErr)
	return ""
}

// pgBouncerBin returns the pgbouncer binary, or skips the test (fails it
// under CI).
func pgBouncerBin(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(PgBouncerPath); err == nil {
		return PgBouncerPath
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgbouncer is not installed (CI is set, so this is a failure, not a skip; .ci/run installs Debian's pgbouncer package)")
		}
		t.Skipf("pgbouncer is not installed, skipping (apt-get install pgbouncer; set CI=1 to make this a failure)")
	}
	return bin
}

// connValue quotes v for a libpq-style connection string, as PgBouncer's
// [databases] section reads it.
func connValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type pgBouncer struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

func startPgBouncer(t testing.TB, bin, dir, server, addr string) (*pgBouncer, error) {
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
`, server, port)
	cmd := exec.Command(bin)
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root.
		name := "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			name = "postgres"
		}
		conf += runAs(cmd, name)
	}
	path := filepath.Join(dir, "pgbouncer-"+port+".ini")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := giveTo(cmd, path); err != nil {
		return nil, err
	}
	cmd.Args = append(cmd.Args, path)
	dieWithTest(cmd)
	p := &pgBouncer{t: t, cmd: cmd, log: new(syncBuffer), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("pgbouncer exited (%v):\n%s", p.err, p.log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("pgbouncer does not accept connections on %s after 10 s (%v):\n%s", addr, err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends PgBouncer at once (SIGTERM: its fast shutdown) and shows its
// log if the test failed.
func (p *pgBouncer) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
	if p.t.Failed() {
		p.t.Logf("pgbouncer log:\n%s", p.log.String())
	}
}

func (p *pgBouncer) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// syncBuffer is a strings.Builder safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// OpenPostgresPgBouncer starts a PgBouncer in transaction pooling mode in
// front of PostgresURL() (see PgBouncerURL) and opens it with driverName
// ("pgx" or "postgres" for lib/pq), adding params (e.g.
// "default_query_exec_mode=exec") to the URL's query.
func OpenPostgresPgBouncer(t testing.TB, driverName, params string) *bun.DB {
	t.Helper()
	u := withParams(PgBouncerURL(t, PostgresURL()), params)
	return bun.NewDB(pool(t, "PostgreSQL through PgBouncer", driverName, u, PoolSize), pgdialect.New())
}

// Package pgbouncer starts Debian's PgBouncer in transaction pooling mode in
// front of a PostgreSQL server, as a child process on a free loopback port.
// It does not link package testing, so programs (sessionbench) use it as
// well as tests (internal/dbtest wraps it for a testing.TB).
package pgbouncer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
)

// Path is where Debian's pgbouncer package installs the binary; Bin looks
// there first, then in PATH.
const Path = "/usr/sbin/pgbouncer"

// Defaults of Config.
const (
	DefaultPoolSize      = 20
	DefaultMaxClientConn = 500
)

// ErrNotInstalled is returned by Bin (and Start) when there is no pgbouncer
// binary.
var ErrNotInstalled = errors.New("pgbouncer is not installed (Debian: apt-get install pgbouncer)")

// Bin returns the pgbouncer binary: Path, else pgbouncer in PATH.
func Bin() (string, error) {
	if _, err := os.Stat(Path); err == nil {
		return Path, nil
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	return bin, nil
}

// Config configures a PgBouncer. The zero value works.
type Config struct {
	// Bin is the pgbouncer binary; "" means Bin().
	Bin string
	// Dir holds the configuration file; "" means a fresh temporary
	// directory, removed by Stop.
	Dir string
	// DefaultPoolSize is PgBouncer's default_pool_size: the server
	// connections per database and user pair, shared by every client.
	// Zero: DefaultPoolSize.
	DefaultPoolSize int
	// MaxClientConn is PgBouncer's max_client_conn. Zero:
	// DefaultMaxClientConn.
	MaxClientConn int
}

// Process is a running PgBouncer.
type Process struct {
	// URL is the server URL given to Start with its host and port
	// replaced by PgBouncer's.
	URL string
	// Addr is PgBouncer's loopback address, host:port.
	Addr string

	cmd     *exec.Cmd
	log     *syncbuf.Buffer
	done    chan struct{}
	err     error // of Wait, set before done is closed
	tempDir string
	once    sync.Once
}

// Start starts a PgBouncer in transaction pooling mode in front of the
// PostgreSQL server of serverURL (a postgres:// URL) and waits until it
// accepts connections. Its URL is serverURL with the host and port replaced
// by PgBouncer's: the same user, database and parameters. Add the driver
// settings PgBouncer needs yourself (for pgx: default_query_exec_mode=exec).
//
// PgBouncer connects to the server as serverURL's user (and password)
// whatever user a client names (auth_type=any), so it needs no user list.
// Run as root, it runs as the user postgres (or nobody), since PgBouncer
// refuses root. On Linux the kernel kills it when the calling thread's
// process ends, even without Stop.
func Start(serverURL string, c Config) (_ *Process, err error) {
	if c.Bin == "" {
		if c.Bin, err = Bin(); err != nil {
			return nil, err
		}
	}
	if c.DefaultPoolSize <= 0 {
		c.DefaultPoolSize = DefaultPoolSize
	}
	if c.MaxClientConn <= 0 {
		c.MaxClientConn = DefaultMaxClientConn
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("pgbouncer: %q is not a postgres:// URL (%v)", serverURL, err)
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
	tempDir := ""
	if c.Dir == "" {
		if tempDir, err = os.MkdirTemp("", "pgbouncer-"); err != nil {
			return nil, err
		}
		c.Dir = tempDir
		defer func() {
			if err != nil {
				os.RemoveAll(tempDir)
			}
		}()
	}
	var lastErr error
	for range 3 {
		addr, err := freeLoopbackPort()
		if err != nil {
			return nil, fmt.Errorf("pgbouncer: finding a free port: %w", err)
		}
		p, err := start(c, server, addr)
		if err != nil {
			lastErr = err
			continue // most likely the port was taken meanwhile
		}
		out := *u
		out.Host = addr
		p.URL, p.Addr, p.tempDir = out.String(), addr, tempDir
		return p, nil
	}
	return nil, fmt.Errorf("pgbouncer did not start: %w", lastErr)
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

func start(c Config, server, addr string) (*Process, error) {
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = %d
default_pool_size = %d
ignore_startup_parameters = extra_float_digits
`, server, port, c.MaxClientConn, c.DefaultPoolSize)
	cmd := exec.Command(c.Bin)
	if os.Geteuid() == 0 {
		name := "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			name = "postgres"
		}
		conf += runAs(cmd, name)
	}
	path := filepath.Join(c.Dir, "pgbouncer-"+port+".ini")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := giveTo(cmd, path); err != nil {
		return nil, err
	}
	cmd.Args = append(cmd.Args, path)
	dieWithParent(cmd)
	p := &Process{cmd: cmd, log: new(syncbuf.Buffer), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Bin, err)
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
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("pgbouncer does not accept connections on %s after 10 s (%v):\n%s", addr, err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends PgBouncer at once (SIGTERM: its fast shutdown; SIGKILL after
// 5 s) and removes the temporary directory Start made. It may be called
// more than once.
func (p *Process) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.kill()
		}
		if p.tempDir != "" {
			os.RemoveAll(p.tempDir)
		}
	})
}

// Pid is PgBouncer's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether PgBouncer has ended, and how (Wait's error).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Log is what PgBouncer wrote so far.
func (p *Process) Log() string { return p.log.String() }

func (p *Process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

package pgnotify_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Environment of a test binary started as an application instance.
const (
	envInstance = "PGNOTIFY_TEST_INSTANCE" // set: serve instead of testing
	envDSN      = "PGNOTIFY_TEST_DSN"
	envListen   = "PGNOTIFY_TEST_LISTEN_DSN" // empty: no listener
	envSchema   = "PGNOTIFY_TEST_SCHEMA"
	envDeletes  = "PGNOTIFY_TEST_DELETES_ONLY" // "1": Options.DeletesOnly
)

func TestMain(m *testing.M) {
	if os.Getenv(envInstance) != "" {
		if err := serveInstance(); err != nil {
			fmt.Fprintln(os.Stderr, "instance:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// instanceConfig is what one application instance runs on.
type instanceConfig struct {
	dsn, listenDSN, schema string
	deletesOnly            bool // the listener's feed is of deletions only
}

// app is one application instance: its pool, cached store, listener (nil
// without) and HTTP handler.
type app struct {
	db       *bun.DB
	cache    *core.CachingStore
	listener *pgnotify.Listener
	handler  http.Handler
	stop     func() // stops the listener and closes the pool
}

// newApp builds an instance as an application would: a pool, a bunstore
// store, a CachingStore with the default TTLs, a listener on a direct
// connection, the middleware.
func newApp(cfg instanceConfig, logger *slog.Logger) (*app, error) {
	sqldb, err := sql.Open("pgx", cfg.dsn)
	if err != nil {
		return nil, err
	}
	sqldb.SetMaxOpenConns(8)
	sqldb.SetMaxIdleConns(8)
	a := &app{db: bun.NewDB(sqldb, pgdialect.New())}
	store, err := bunstore.New(a.db, bunstore.WithSchemaName(cfg.schema))
	if err != nil {
		sqldb.Close()
		return nil, err
	}
	a.cache = core.NewCachingStore(store, core.CachingOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if cfg.listenDSN != "" {
		a.listener, err = pgnotify.New(cfg.listenDSN, a.cache, pgnotify.Options{Logger: logger, DeletesOnly: cfg.deletesOnly})
		if err != nil {
			cancel()
			sqldb.Close()
			return nil, err
		}
		go func() { defer close(done); a.listener.Run(ctx) }()
	} else {
		close(done)
	}
	a.stop = func() {
		cancel()
		<-done
		store.Close()
		sqldb.Close()
	}
	sessions, err := httpadapter.New(a.cache, httpadapter.WithSecure(false), httpadapter.WithLogger(logger))
	if err != nil {
		a.stop()
		return nil, err
	}
	a.handler = sessions.Middleware(a.routes())
	return a, nil
}

// routes: every answer is a short text body.
//
//	POST /login?user=U   store user U in the session and bind it to U
//	GET  /whoami         the session's user, or "" for none
//	POST /logout         Flush
//	POST /cycle          CycleID
//	POST /revoke?user=U  delete every session of U (log out everywhere)
//	POST /set?k=K&v=V    store V under K
//	POST /incr           core.Update: n = n + 1
//	GET  /feed           "up" while the listener listens, else "down"
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, f func(ctx context.Context, s *core.Session, r *http.Request) (string, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			body, err := f(r.Context(), httpadapter.FromContext(r.Context()), r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, body)
		})
	}
	handle("POST /login", func(ctx context.Context, s *core.Session, r *http.Request) (string, error) {
		u := r.URL.Query().Get("user")
		if err := s.Insert(ctx, "user", u); err != nil {
			return "", err
		}
		return u, s.SetUser(ctx, u)
	})
	handle("GET /whoami", func(ctx context.Context, s *core.Session, _ *http.Request) (string, error) {
		u, _, err := core.Get[string](ctx, s, "user")
		return u, err
	})
	handle("POST /logout", func(ctx context.Context, s *core.Session, _ *http.Request) (string, error) {
		return "", s.Flush(ctx)
	})
	handle("POST /cycle", func(ctx context.Context, s *core.Session, _ *http.Request) (string, error) {
		return "", s.CycleID(ctx)
	})
	handle("POST /revoke", func(ctx context.Context, _ *core.Session, r *http.Request) (string, error) {
		n, err := a.cache.DeleteUserSessions(ctx, r.URL.Query().Get("user"), "")
		return fmt.Sprint(n), err
	})
	handle("POST /set", func(ctx context.Context, s *core.Session, r *http.Request) (string, error) {
		return "", s.Insert(ctx, r.URL.Query().Get("k"), r.URL.Query().Get("v"))
	})
	handle("POST /incr", func(ctx context.Context, s *core.Session, _ *http.Request) (string, error) {
		n, err := core.Update(ctx, s, "n", func(old int64, _ bool) (int64, error) { return old + 1, nil })
		return fmt.Sprint(n), err
	})
	handle("GET /feed", func(context.Context, *core.Session, *http.Request) (string, error) {
		if a.listener != nil && a.listener.Listening() {
			return "up", nil
		}
		return "down", nil
	})
	return mux
}

// serveInstance is the child process: it serves an app on a free port,
// prints "ADDR host:port", and exits when its stdin closes (the parent
// ended or stopped it).
func serveInstance() error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := newApp(instanceConfig{dsn: os.Getenv(envDSN), listenDSN: os.Getenv(envListen), schema: os.Getenv(envSchema), deletesOnly: os.Getenv(envDeletes) == "1"}, logger)
	if err != nil {
		return err
	}
	defer a.stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler}
	go srv.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// instance is an application instance as a client sees it.
type instance struct {
	name string
	url  string
}

// startLocal runs an app in this process.
func startLocal(t *testing.T, cfg instanceConfig) (*instance, *app) {
	t.Helper()
	a, err := newApp(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.handler)
	t.Cleanup(func() { srv.Close(); a.stop() })
	return &instance{name: "local", url: srv.URL}, a
}

// startProcess runs an app in a child process (this test binary, started
// again with envInstance set).
func startProcess(t *testing.T, cfg instanceConfig) *instance {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	deletes := ""
	if cfg.deletesOnly {
		deletes = "1"
	}
	cmd.Env = append(os.Environ(), envInstance+"=1", envDSN+"="+cfg.dsn, envListen+"="+cfg.listenDSN, envSchema+"="+cfg.schema, envDeletes+"="+deletes)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A connection the client dialed and never used is one the
		// instance's Shutdown waits 5 s for (net/http's rule for
		// connections without a request): close them first.
		client.CloseIdleConnections()
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("instance process: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the instance process did not exit within 10 s of its stdin closing")
		}
		if t.Failed() {
			t.Logf("instance process stderr:\n%s", stderr.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-addr:
		return &instance{name: "process", url: "http://" + a}
	case <-time.After(30 * time.Second):
		t.Fatalf("the instance process did not start within 30 s; stderr:\n%s", stderr.String())
		return nil
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

// do sends one request with the session cookie (none if ""), and returns
// the body and the cookie the response sets ("" if it sets none, "-" if
// it removes it).
func (in *instance) do(method, path, cookie string) (body, setCookie string, err error) {
	req, err := http.NewRequest(method, in.url+path, nil)
	if err != nil {
		return "", "", err
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "id", Value: cookie})
	}
	res, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s %s on %s: %s: %s", method, path, in.name, res.Status, b)
	}
	for _, c := range res.Cookies() {
		if c.Name == "id" {
			setCookie = c.Value
			if c.MaxAge < 0 {
				setCookie = "-"
			}
		}
	}
	return string(b), setCookie, nil
}

func (in *instance) must(t *testing.T, method, path, cookie string) (body, setCookie string) {
	t.Helper()
	body, setCookie, err := in.do(method, path, cookie)
	if err != nil {
		t.Fatal(err)
	}
	return body, setCookie
}

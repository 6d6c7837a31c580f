package pgnotify_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/uptrace/bun"
)

// testDB is a fresh schema with a migrated session table, and how to reach
// it.
type testDB struct {
	db     *bun.DB          // a pool on the test database
	store  *bunstore.Store  // a store on the table, without cache
	schema string           // the table's schema
	url    string           // the database's URL
	admin  func() *pgx.Conn // a new direct connection, closed when the test ends
}

// newTestDB skips the test (or fails it under CI) when PostgreSQL is not
// reachable.
func newTestDB(t *testing.T) *testDB {
	t.Helper()
	db := dbtest.OpenPostgres(t)
	store := dbtest.NewStore(t, db)
	u := dbtest.PostgresURL()
	return &testDB{db: db, store: store, schema: store.SchemaName(), url: u, admin: func() *pgx.Conn {
		t.Helper()
		return connect(t, u)
	}}
}

// otherStore is a second store on the same table, on its own pool: what
// another process would have.
func (d *testDB) otherStore(t *testing.T) *bunstore.Store {
	t.Helper()
	s, err := bunstore.New(dbtest.OpenPostgres(t), bunstore.WithSchemaName(d.schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// withAppName returns dsn with application_name set to a fresh name, by
// which a test finds (and terminates) the listener's connection.
func withAppName(t testing.TB, dsn string) (string, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "pgnotify_test_" + hex.EncodeToString(b[:])
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String(), name
}

// terminate ends every backend whose application_name is name, waits until
// they are gone, and reports how many there were.
func terminate(t *testing.T, admin *pgx.Conn, name string) int {
	t.Helper()
	ctx := context.Background()
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the terminated backends to exit", func() bool {
		var left int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	return n
}

// waitFor polls cond every millisecond until it holds, and fails the test
// if it does not within d; it returns how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// run starts l.Run and, when the test ends, stops it and checks that it
// returned context.Canceled. stop stops it earlier (and waits).
func run(t *testing.T, l *pgnotify.Listener) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10 s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return stop
}

// testLogger logs to t.Log, until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, nil))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// countingStore counts the loads that reach the backend, so a test can tell
// a cache hit from a miss. It keeps bunstore's SchemaName and TableName.
type countingStore struct {
	*bunstore.Store
	loads atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, id, now)
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newRecord creates a live session through s and returns its record.
func newRecord(t *testing.T, s core.Store, user string) *core.Record {
	t.Helper()
	tok, err := core.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec := &core.Record{ID: tok.ID(), Data: map[string][]byte{"k": {1}}, Expiry: now.Add(time.Hour), Created: now, User: user}
	if err := s.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// proxy forwards TCP connections to the database, and can refuse new ones
// or stall the open ones (a network partition: nothing is closed, nothing
// gets through).
type proxy struct {
	dsn    string // the database's URL, through the proxy
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	refused bool
	stalled bool
	conns   map[net.Conn]bool
	closed  bool
}

func newProxy(t *testing.T, dsn string) *proxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &proxy{dsn: u.String(), ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed, p.stalled = true, false
		for c := range p.conns {
			c.Close()
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// track registers c, or reports false if the proxy refuses or is closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused || p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	if !p.track(s) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				for p.stalled {
					p.cond.Wait()
				}
				p.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done
	c.Close()
	s.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// refuse makes the proxy close new connections at once (on), or accept
// them again (off).
func (p *proxy) refuse(on bool) {
	p.mu.Lock()
	p.refused = on
	p.mu.Unlock()
}

// stall stops (on) or resumes (off) forwarding on every connection.
func (p *proxy) stall(on bool) {
	p.mu.Lock()
	p.stalled = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

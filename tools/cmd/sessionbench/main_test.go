package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/dburl"
)

// TestMain lets the test binary be the server processes TestRun starts: run
// re-executes os.Executable() with the serve subcommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serveCommand {
		os.Exit(serveMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// skipOrFail skips the test, or fails it when CI is set, so CI never passes
// by skipping.
func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf(format+" (CI is set: failing instead of skipping)", args...)
	}
	tb.Skipf(format, args...)
}

// requireDB skips the test (fails it under CI) when backend name's server
// cannot be reached.
func requireDB(tb testing.TB, name string) {
	tb.Helper()
	if name == "sqlite" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := openDB(ctx, name, "", "", 1)
	if err != nil {
		skipOrFail(tb, "%s unreachable (%s / %s): %v", name, dburl.EnvPostgres, dburl.EnvMySQL, err)
	}
	db.Close()
}

// requireWrk skips the test (fails it under CI) when wrk is not installed.
func requireWrk(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("wrk")
	if err != nil {
		skipOrFail(tb, "wrk is not installed (Debian: apt-get install -y wrk): %v", err)
	}
	return p
}

// testConfig is the configuration args give a test on backend name, with
// the SQLite file and wrk's files in a temporary directory. A database
// server that cannot be reached skips the test, or fails it when CI is set.
func testConfig(tb testing.TB, name string, args ...string) config {
	tb.Helper()
	requireDB(tb, name)
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.tempDir = tb.TempDir()
	return cfg
}

// testServer builds backend name's server s in this process, on a fresh
// schema, for the rest of the test.
func testServer(tb testing.TB, name, s string, floorRow bool) http.Handler {
	tb.Helper()
	_, srv := testBackendServer(tb, serverConfig{backend: name, server: s, pool: 2, floorRow: floorRow})
	return srv.handler
}

// testBackendServer creates cfg.backend's schema (cfg.schema is set to it)
// and builds cfg's server in this process, both for the rest of the test.
func testBackendServer(tb testing.TB, cfg serverConfig) (*backend, *server) {
	tb.Helper()
	requireDB(tb, cfg.backend)
	ctx := context.Background()
	b, err := newBackend(ctx, cfg.backend, tb.TempDir(), cfg.floorRow)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.close(); err != nil {
			tb.Error(err)
		}
	})
	cfg.schema = b.schema
	srv, err := newServer(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.close(); err != nil {
			tb.Error(err)
		}
	})
	return b, srv
}

// TestRun runs the whole benchmark briefly on every backend with the seed
// preset: each server in a process of its own, wrk for 1 s against each on
// every workload. It checks that every server answered with no errors, that
// the server processes' CPU was measured, that the counters went up by the
// increments at most, and sqlsessions' statements per request. A database
// that cannot be reached, or wrk missing, skips (fails under CI).
// runReport runs cfg (at most 3 minutes), logs its progress lines and
// fails the test if the run fails.
func runReport(t *testing.T, cfg config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := run(ctx, cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Logf("progress:\n%s", log.String())
	return rep
}

func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wrk against every server, backend and workload; skipped with -short (.ci/run runs it)")
	}
	requireWrk(t)
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			warmup := "0s"
			if name == "sqlite" {
				warmup = "1s" // one backend covers the warm-up
			}
			cfg := testConfig(t, name, "--preset", "seed",
				"--backends", name, "--duration", "1s", "--warmup", warmup, "--rounds", "1",
				"--sessions", "20", "--concurrency", "4", "--threads", "1", "--count-statements")
			if cfg.pool != 10 || cfg.inactivity != 10*time.Second || cfg.sessions != 20 {
				t.Fatalf("--preset seed with overrides: %+v", cfg)
			}
			rep := runReport(t, cfg)
			if rep.Errors != 0 || len(rep.Results) != len(workloadNames) {
				t.Fatalf("%d errors, %d results, want 0 and one per workload (%d)", rep.Errors, len(rep.Results), len(workloadNames))
			}
			for _, r := range rep.Results {
				if len(r.Servers) != 3 {
					t.Fatalf("%s: %d servers, want 3", r.Workload, len(r.Servers))
				}
				for _, s := range r.Servers {
					if s.Errors != 0 || s.Requests == 0 || s.ReqPerSec <= 0 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms || len(s.Rounds) != 1 {
						t.Errorf("%s/%s: %+v", r.Workload, s.Server, s)
					}
					if runtime.GOOS == "linux" && (s.ServerCPUMicros <= 0 || s.ReadCallsPerRequest <= 0) {
						t.Errorf("%s/%s: no server CPU or system calls measured: %+v", r.Workload, s.Server, s)
					}
					if s.AllocsPerRequest <= 0 {
						t.Errorf("%s/%s: no allocations measured: %+v", r.Workload, s.Server, s)
					}
					if r.Workload == workloadCounter {
						// wrk does not count the requests in flight when
						// it stops: up to one per connection and run.
						gain := s.CountAfter - s.CountBefore
						if s.CountBefore != cfg.sessions || gain <= 0 || gain > s.Increments+2*cfg.concurrency {
							t.Errorf("%s: counters %d -> %d after %d increments", s.Server, s.CountBefore, s.CountAfter, s.Increments)
						}
					}
				}
				// sqlsessions' statements per request: a read costs one
				// load, a new session one insert, an increment a load and a
				// save (more when a save meets a concurrent write); the
				// requests in flight when wrk stopped ran theirs too.
				ours := r.Servers[0]
				st, slack := ours.StatementsPerRequest, 2*float64(cfg.concurrency)/float64(ours.Requests)
				if (r.Workload == workloadCounter && st < 2) || (r.Workload != workloadCounter && (st < 1 || st > 1+slack)) {
					t.Errorf("%s: sqlsessions ran %.3f statements per request", r.Workload, st)
				}
				if r.OursPerSCS <= 0 || r.OursPerFloor <= 0 || r.RoundsPerSCS.Median <= 0 || r.CPUOursPerFloor <= 0 {
					t.Errorf("%s: ratios %+v", r.Workload, r)
				}
			}
			var out strings.Builder
			printReport(&out, rep)
			for _, want := range []string{name + " / counter", "sqlsessions/floor", "sqlsessions/scs", "server CPU", "preset seed"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "not a result") {
				t.Errorf("report of a run without errors says it is not a result:\n%s", out.String())
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{2}, Spread{2, 2, 2}},
		{[]float64{3, 1, 2}, Spread{2, 1, 3}},
		{[]float64{4, 1, 3, 2}, Spread{2.5, 1, 4}},
	} {
		if got := spreadOf(tc.in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestSplit: the instances' wrk processes share the connections out, each
// with at least one thread and no more threads than connections.
func TestSplit(t *testing.T) {
	for _, tc := range []struct{ conns, threads, n int }{{32, 2, 1}, {32, 2, 2}, {32, 2, 3}, {5, 4, 4}, {4, 1, 4}, {33, 8, 2}} {
		sumC := 0
		for k := range tc.n {
			c, th := split(tc.conns, tc.threads, k, tc.n)
			sumC += c
			if c < tc.conns/tc.n || c > tc.conns/tc.n+1 || th < 1 || th > c || th > max(tc.threads/tc.n, 1) {
				t.Errorf("split(%d, %d, %d, %d) = %d connections, %d threads", tc.conns, tc.threads, k, tc.n, c, th)
			}
		}
		if sumC != tc.conns {
			t.Errorf("%d connections over %d instances: %d in all", tc.conns, tc.n, sumC)
		}
	}
	if c, th := split(32, 2, 0, 1); c != 32 || th != 2 {
		t.Errorf("one instance: %d connections, %d threads; want 32, 2", c, th)
	}
}

func TestRoundOrder(t *testing.T) {
	// Over len(serverNames) rounds every server runs once in every position.
	seen := map[string]map[int]bool{}
	for r := range len(serverNames) {
		order := roundOrder(serverNames, r)
		if len(order) != len(serverNames) {
			t.Fatalf("round %d: %q", r, order)
		}
		for pos, s := range order {
			if seen[s] == nil {
				seen[s] = map[int]bool{}
			}
			seen[s][pos] = true
		}
	}
	for _, s := range serverNames {
		if len(seen[s]) != len(serverNames) {
			t.Errorf("%s ran in positions %v, want all %d", s, seen[s], len(serverNames))
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--backends", "sqlite", "--workloads", "read,new"}, true},
		{[]string{"--preset", "seed"}, true},
		{[]string{"--preset", "seed", "--duration", "9s"}, false}, // read sessions would expire
		{[]string{"--preset", "seed", "--duration", "9s", "--workloads", "counter"}, true},
		{[]string{"--preset", "other"}, false},
		{[]string{"--backends", "oracle"}, false},
		{[]string{"--workloads", ""}, false},
		{[]string{"--duration", "0s"}, false},
		{[]string{"--duration", "1500ms"}, false},
		{[]string{"--warmup", "500ms"}, false},
		{[]string{"--rounds", "0"}, false},
		{[]string{"--concurrency", "0"}, false},
		{[]string{"--sessions", "0"}, false},
		{[]string{"--inactivity", "-1s"}, false},
		{[]string{"extra"}, false},
		{[]string{"--servers", "floor,sqlsessions"}, true},
		{[]string{"--servers", "floor,other"}, false},
		{[]string{"--servers", ""}, false},
		{[]string{"--instances", "4"}, true},
		{[]string{"--instances", "0"}, false},
		{[]string{"--instances", "5"}, false},
		{[]string{"--instances", "2", "--concurrency", "1"}, false},
		{[]string{"--cache", "--backends", "sqlite,mysql"}, true},
		{[]string{"--cache", "--servers", "scs,floor"}, false},
		{[]string{"--pgnotify", "--backends", "postgres"}, true},
		{[]string{"--pgnotify"}, false}, // every backend by default
		{[]string{"--pgnotify", "--backends", "postgres", "--servers", "floor"}, false},
		{[]string{"--pgnotify-deletes", "--backends", "postgres"}, true},
		{[]string{"--pgnotify-deletes", "--backends", "sqlite"}, false},
		{[]string{"--pgbouncer", "--backends", "postgres", "--servers", "floor"}, true},
		{[]string{"--pgbouncer", "--backends", "postgres,mysql"}, false},
		{[]string{"--pause", "8ms"}, true},
		{[]string{"--pause", "-1ms"}, false},
		{[]string{"--pause", "1500us"}, false},
		{[]string{"--pause", "11s"}, false},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q): %v", tc.args, err)
		}
	}
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil || cfg.sessions != defaultSessions || cfg.concurrency != 32 || cfg.threads != 2 || cfg.rounds != 3 ||
		cfg.duration != 5*time.Second || cfg.pool != 32 || cfg.sqlitePool != 4 || cfg.inactivity != 0 ||
		len(cfg.backends) != 3 || len(cfg.workloads) != 3 {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
	// The seed preset: the examples' pool and expiry, 32 connections, 2,000
	// sessions; a flag given beside it wins.
	cfg, err = parseFlags([]string{"--preset", "seed", "--sqlite-pool", "2"}, io.Discard)
	if err != nil || cfg.pool != 10 || cfg.sqlitePool != 2 || cfg.inactivity != 10*time.Second || cfg.concurrency != 32 || cfg.sessions != 2000 {
		t.Errorf("--preset seed --sqlite-pool 2: %+v, %v", cfg, err)
	}
	if !slices.Equal(cfg.servers, serverNames) || cfg.instances != 1 || cfg.cache || cfg.pgnotify || cfg.pgbouncer {
		t.Errorf("defaults: servers %q, instances %d, cache %v, pgnotify %v, pgbouncer %v", cfg.servers, cfg.instances, cfg.cache, cfg.pgnotify, cfg.pgbouncer)
	}
	// Servers run in their usual order whatever the flag's; --pgnotify
	// implies --cache.
	cfg, err = parseFlags([]string{"--servers", "floor,sqlsessions", "--backends", "postgres", "--pgnotify", "--instances", "3"}, io.Discard)
	if err != nil || !slices.Equal(cfg.servers, []string{serverOurs, serverFloor}) || !cfg.cache || !cfg.pgnotify || cfg.instances != 3 {
		t.Errorf("--servers floor,sqlsessions --pgnotify --instances 3: %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--concurrency", "1", "--threads", "4"}, io.Discard)
	if err != nil || cfg.threads != 1 {
		t.Errorf("--concurrency 1 --threads 4: %d threads, %v; want 1", cfg.threads, err)
	}
}

// TestServeArgs: the command line a child gets says everything serve needs.
func TestServeArgs(t *testing.T) {
	in := serverConfig{backend: "mysql", server: serverSCS, schema: "s1", pool: 7, inactivity: 10 * time.Second, floorRow: true, countStatements: true,
		cache: true, pgnotify: true, pgbouncer: true}
	var got serverConfig
	var profile string
	fs := serveFlags(&got, &profile)
	args := serveArgs(in, "p.prof")
	if args[0] != serveCommand {
		t.Fatalf("args %q do not start with %q", args, serveCommand)
	}
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatal(err)
	}
	if got != in || profile != "p.prof" {
		t.Errorf("serve parses %+v, %q from %q, want %+v, p.prof", got, profile, args, in)
	}
}

// TestFloorRow checks that --floor-row gives the floor's SELECT a session's
// row (the 12-byte blob, the expiry and a version) on every backend, and
// that the floor still answers through it.
func TestFloorRow(t *testing.T) {
	blob, err := hex.DecodeString(floorRowBlob)
	if err != nil || len(blob) != 12 {
		t.Fatalf("floorRowBlob: %x, %v", blob, err)
	}
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			h := testServer(t, name, serverFloor, true)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, pathCounter, nil))
			cookie, _, _ := strings.Cut(w.Header().Get("Set-Cookie"), ";")
			r := httptest.NewRequest(http.MethodGet, pathRead, nil)
			r.Header.Set("Cookie", cookie)
			w = httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK || w.Body.String() != "Current count: 1" {
				t.Fatalf("read: %d %q", w.Code, w.Body.String())
			}
			var (
				n       int
				data    []byte
				expiry  anyScanner
				version int64
			)
			_, token, _ := strings.Cut(cookie, "=")
			f := h.(*floor)
			if err := f.load.row(context.Background(), token, f.arg(time.Now())).Scan(&n, &data, &expiry, &version); err != nil {
				t.Fatal(err)
			}
			if n != 1 || !bytes.Equal(data, blob) || expiry.v == nil || version != 1 {
				t.Fatalf("row: counter %d, data %x, expiry %v, version %d; want 1, %x, a time, 1", n, data, expiry.v, version, blob)
			}
		})
	}
}

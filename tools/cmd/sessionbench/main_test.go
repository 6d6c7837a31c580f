package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore/bunstoretest"
)

// testConfig is the configuration args give a test on backend name, with
// the SQLite file in a temporary directory. A database server that cannot be
// reached skips the test, or fails it when CI is set.
func testConfig(tb testing.TB, name string, args ...string) config {
	tb.Helper()
	switch name {
	case "postgres":
		bunstoretest.OpenPostgres(tb)
	case "mysql":
		bunstoretest.OpenMySQL(tb)
	}
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.db.tempDir = tb.TempDir()
	return cfg
}

// openTestBackend opens backend name's three servers as args configure
// them, for the rest of the test.
func openTestBackend(tb testing.TB, name string, args ...string) *backend {
	tb.Helper()
	cfg := testConfig(tb, name, args...)
	be, err := openBackend(context.Background(), name, cfg.db, false, false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := be.close(); err != nil {
			tb.Error(err)
		}
	})
	return be
}

// TestRun runs the whole benchmark briefly on every backend and checks that
// every server answered every workload without errors and that the counter
// workload increased the seeded sessions' counters. A server that cannot be
// reached skips its backend, or fails it when CI is set.
func TestRun(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, name,
				"--backends", name, "--duration", "200ms", "--warmup", "50ms", "--rounds", "1",
				"--sessions", "20", "--concurrency", "4", "--pool", "4", "--count-statements")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var log strings.Builder
			rep, err := run(ctx, cfg, &log)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, log.String())
			}
			if len(rep.Results) != len(workloadNames) {
				t.Fatalf("%d results, want one per workload (%d)", len(rep.Results), len(workloadNames))
			}
			for _, r := range rep.Results {
				if len(r.Servers) != 3 {
					t.Fatalf("%s: %d servers, want 3", r.Workload, len(r.Servers))
				}
				for _, s := range r.Servers {
					ok := s.Requests - s.Errors
					if s.Errors != 0 || ok == 0 || s.ReqPerSec <= 0 || s.P99Ms < s.P50Ms || s.P50Ms <= 0 {
						t.Errorf("%s/%s: %+v", r.Workload, s.Server, s)
					}
					if runtime.GOOS == "linux" && s.AppCPUMicros <= 0 {
						t.Errorf("%s/%s: no CPU time measured: %+v", r.Workload, s.Server, s)
					}
					if r.Workload == workloadCounter {
						gain := s.CountAfter - s.CountBefore
						if s.CountBefore < cfg.sessions || gain <= 0 || gain > ok {
							t.Errorf("%s: counters %d -> %d after %d increments", s.Server, s.CountBefore, s.CountAfter, ok)
						}
					}
				}
				// sqlsessions' statements per request: a read costs one
				// load, a new session one insert, an increment a load and a
				// save (more when a save meets a concurrent write).
				st := r.Servers[0].StatementsPerRequest
				if (r.Workload == workloadCounter && st < 2) || (r.Workload != workloadCounter && st != 1) {
					t.Errorf("%s: sqlsessions ran %.3f statements per request", r.Workload, st)
				}
				if r.OursPerSCS <= 0 || r.OursPerFlor <= 0 || r.RoundsPerSCS.Median <= 0 || r.RoundsPerFloor.Min > r.RoundsPerFloor.Max {
					t.Errorf("%s: ratios %v %v", r.Workload, r.OursPerSCS, r.OursPerFlor)
				}
			}
			var out strings.Builder
			printReport(&out, rep)
			for _, want := range []string{name + " / counter", "sqlsessions/floor", "floor"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
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

func TestRoundOrder(t *testing.T) {
	// Over len(serverNames) rounds every server runs once in every position.
	seen := map[string]map[int]bool{}
	for r := range len(serverNames) {
		order := roundOrder(r)
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
		{[]string{"--backends", "oracle"}, false},
		{[]string{"--workloads", ""}, false},
		{[]string{"--duration", "0s"}, false},
		{[]string{"--rounds", "0"}, false},
		{[]string{"--concurrency", "0"}, false},
		{[]string{"--sessions", "0"}, false},
		{[]string{"extra"}, false},
	} {
		cfg, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q): %v", tc.args, err)
		}
		if tc.ok && tc.args == nil && (cfg.sessions != defaultSessions || cfg.concurrency != 32 || cfg.rounds != 3 || cfg.duration != 5*time.Second || len(cfg.backends) != 3 || len(cfg.workloads) != 3) {
			t.Errorf("defaults: %+v", cfg)
		}
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
			h := openTestBackend(t, name, "--floor-row").servers["floor"].srv.Handler
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
			if err := f.load.QueryRowContext(context.Background(), token, f.arg(time.Now())).Scan(&n, &data, &expiry, &version); err != nil {
				t.Fatal(err)
			}
			if n != 1 || !bytes.Equal(data, blob) || expiry.v == nil || version != 1 {
				t.Fatalf("row: counter %d, data %x, expiry %v, version %d; want 1, %x, a time, 1", n, data, expiry.v, version, blob)
			}
		})
	}
}

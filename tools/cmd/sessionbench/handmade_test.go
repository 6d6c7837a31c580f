package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
)

// TestHandmade checks on every backend that handmade keeps sqlsessions'
// row: bunstore, on handmade's table, loads the session a handmade cookie
// names (same key from the token, same columns, same MessagePack) with the
// counter the responses report and one version per write; that each write
// sends the cookie with its Max-Age and a read sends none; that concurrent
// increments on one session, which conflict, each count once; and that a
// missing session starts a new one.
func TestHandmade(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b, srv := testBackendServer(t, serverConfig{backend: name, server: serverHandmade, pool: 2, inactivity: 10 * time.Second})
			serve := func(path, cookie string) (body string, setCookie []string) {
				t.Helper()
				r := httptest.NewRequest(http.MethodGet, path, nil)
				if cookie != "" {
					r.Header.Set("Cookie", cookie)
				}
				w := httptest.NewRecorder()
				srv.handler.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
				}
				return w.Body.String(), w.Header().Values("Set-Cookie")
			}

			_, set := serve(pathCounter, "")
			if len(set) != 1 || !strings.Contains(set[0], "; Max-Age=10;") || !strings.Contains(set[0], "HttpOnly") {
				t.Fatalf("new session: Set-Cookie %q, want one cookie with Max-Age=10 and HttpOnly", set)
			}
			cookie, _, _ := strings.Cut(set[0], ";")
			for want := 2; want <= 3; want++ {
				body, set := serve(pathCounter, cookie)
				if body != "Current count: "+strconv.Itoa(want) || len(set) != 1 || !strings.HasPrefix(set[0], cookie+";") {
					t.Fatalf("counter: %q, Set-Cookie %q; want count %d and the same cookie", body, set, want)
				}
			}
			if body, set := serve(pathRead, cookie); body != "Current count: 3" || len(set) != 0 {
				t.Fatalf("read: %q, Set-Cookie %q; want count 3 and no cookie", body, set)
			}

			// Concurrent increments on one session: each answered one
			// counts once, though writes conflict and read again.
			h := srv.handler.(*handmade)
			done, good := 0, 3
			for h.conflicts.Load() == 0 && done < 400 {
				var wg sync.WaitGroup
				ok := make([]int, 4)
				for g := range ok {
					wg.Go(func() {
						for range 10 {
							r := httptest.NewRequest(http.MethodGet, pathCounter, nil)
							r.Header.Set("Cookie", cookie)
							w := httptest.NewRecorder()
							h.ServeHTTP(w, r)
							if w.Code == http.StatusOK {
								ok[g]++
							} else if w.Code != http.StatusConflict {
								t.Errorf("concurrent increment: %d %s", w.Code, w.Body.String())
							}
						}
					})
				}
				wg.Wait()
				for _, k := range ok {
					good += k
				}
				done += 40
			}
			if h.conflicts.Load() == 0 {
				t.Fatalf("%d concurrent increments met no conflict", done)
			}
			if body, _ := serve(pathRead, cookie); body != "Current count: "+strconv.Itoa(good) {
				t.Fatalf("after %d answered increments of %d (%d conflicts): %q", good-3, done, h.conflicts.Load(), body)
			}

			// bunstore reads the row handmade wrote.
			_, value, _ := strings.Cut(cookie, "=")
			tok, err := core.ParseToken(value)
			if err != nil {
				t.Fatal(err)
			}
			db, err := openDB(ctx, name, b.schema, "", 1)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			opts := []bunstore.Option{bunstore.WithTableName(handmadeTable)}
			if name != "sqlite" {
				opts = append(opts, bunstore.WithSchemaName(b.schema))
			}
			store, err := bunstore.New(db, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			rec, err := store.Load(ctx, tok.ID(), time.Now())
			if err != nil || rec == nil {
				t.Fatalf("bunstore.Load(%s): %v, %v", tok.ID(), rec, err)
			}
			var n int
			if err := store.Codec().Unmarshal(rec.Data["counter"], &n); err != nil || n != good || rec.Version != uint64(good) || rec.Created.IsZero() {
				t.Fatalf("record: counter %d (%v), version %d, created %v; want %d, %d, a time", n, err, rec.Version, rec.Created, good, good)
			}
			if left := time.Until(rec.Expiry); left <= 0 || left > 10*time.Second {
				t.Fatalf("expiry in %v, want within the 10 s of inactivity", left)
			}

			// A session that is gone: a new one.
			if err := store.Delete(ctx, tok.ID()); err != nil {
				t.Fatal(err)
			}
			body, set := serve(pathCounter, cookie)
			if body != "Current count: 1" || len(set) != 1 || strings.HasPrefix(set[0], cookie+";") {
				t.Fatalf("after deletion: %q, Set-Cookie %q; want count 1 and a new cookie", body, set)
			}
		})
	}
}

// TestRunHandmade runs handmade beside sqlsessions under wrk (SQLite: no
// server needed) and checks that it answers without errors, that its
// counters went up by its increments, and that the report gives the ratio.
func TestRunHandmade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wrk; skipped with -short (.ci/run runs it)")
	}
	requireWrk(t)
	cfg := testConfig(t, "sqlite", "--preset", "seed", "--backends", "sqlite", "--servers", "sqlsessions,handmade",
		"--workloads", "counter,new", "--duration", "1s", "--warmup", "0s", "--rounds", "2",
		"--sessions", "20", "--concurrency", "4", "--threads", "1")
	rep := runReport(t, cfg)
	if rep.Errors != 0 || len(rep.Results) != 2 {
		t.Fatalf("%d errors, %d results; want 0 and 2", rep.Errors, len(rep.Results))
	}
	for _, r := range rep.Results {
		hm, ok := r.server(serverHandmade)
		if !ok || hm.Requests == 0 || hm.ServerCPUMicros <= 0 || r.OursPerHandmade <= 0 || r.CPUOursPerHandmade <= 0 || r.RoundsPerHandmade.Median <= 0 || r.OursPerFloor != 0 {
			t.Fatalf("%s: handmade %+v; ratios %+v", r.Workload, hm, r)
		}
		if gain := hm.CountAfter - hm.CountBefore; r.Workload == workloadCounter && (gain <= 0 || gain > hm.Increments+2*cfg.concurrency) {
			t.Errorf("handmade: counters %d -> %d after %d increments", hm.CountBefore, hm.CountAfter, hm.Increments)
		}
	}
	var out strings.Builder
	printReport(&out, rep)
	if !strings.Contains(out.String(), "sqlsessions/handmade") || strings.Contains(out.String(), "sqlsessions/floor") {
		t.Errorf("report:\n%s", out.String())
	}
}

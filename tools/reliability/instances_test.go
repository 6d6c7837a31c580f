package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
)

// openTwoStores opens two stores on one database, each on its own pool, as
// two processes of one application have: on PostgreSQL and MariaDB two pools
// on one schema, on SQLite two sqlitewasm.Open of one file. plain is the
// first one, for inspection without a cache.
func openTwoStores(t *testing.T, name string) (first, second *bunstore.Store) {
	t.Helper()
	open := func() *bun.DB {
		switch name {
		case "postgres":
			return dbtest.OpenPostgres(t)
		case "mysql":
			return dbtest.OpenMySQL(t)
		}
		t.Fatalf("unknown backend %q", name)
		return nil
	}
	if name == "sqlite" {
		path := filepath.Join(t.TempDir(), "sessions.db")
		open = func() *bun.DB {
			db, err := sqlitewasm.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	}
	first = dbtest.NewStore(t, open())
	var opts []bunstore.Option
	if s := first.SchemaName(); s != "" {
		opts = append(opts, bunstore.WithSchemaName(s))
	}
	second, err := bunstore.New(open(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	return first, second
}

// cachedInstance serves App through a CachingStore with the default TTL in
// front of store: one application instance.
func cachedInstance(t *testing.T, store core.Store) *httptest.Server {
	t.Helper()
	m, err := httpadapter.New(core.NewCachingStore(store, core.CachingOptions{}),
		httpadapter.WithSecure(false), httpadapter.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Middleware(App()))
	t.Cleanup(srv.Close)
	return srv
}

// call sends one request with the session cookie and returns the State and
// the cookie the response sets ("" for none, "-" for a removal).
func call(srv *httptest.Server, method, path, cookie string) (State, string, error) {
	var st State
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		return st, "", err
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "id", Value: cookie})
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		return st, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return st, "", err
	}
	if res.StatusCode != http.StatusOK {
		return st, "", fmt.Errorf("%s %s: %s: %s", method, path, res.Status, body)
	}
	set := ""
	for _, c := range res.Cookies() {
		if c.Name == "id" {
			set = c.Value
			if c.MaxAge < 0 {
				set = "-"
			}
		}
	}
	return st, set, json.Unmarshal(body, &st)
}

// twoInstanceTTLBound is how soon an instance must refuse a session another
// one ended: the default cache TTL, plus room for a slow machine.
const twoInstanceTTLBound = core.DefaultCacheTTL + 500*time.Millisecond

// TestTwoInstances: two instances of an application, each with its own pool
// and a CachingStore with the default TTL (no invalidation feed), on one
// database. A log-out (Flush), a CycleID and an operator's delete on one are
// refused by the other within the TTL; requests through both at once lose
// no write. The PostgreSQL feed, which brings the bound down to
// milliseconds, is tested in the pgnotify module.
func TestTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the cache's 1 s TTL on every backend (10 s): runs without -short; pgnotify's TestTwoProcessesLogout/listener covers the bound in -short")
	}
	for _, name := range soakBackends {
		t.Run(name, func(t *testing.T) {
			plain, second := openTwoStores(t, name)
			a, b := cachedInstance(t, plain), cachedInstance(t, second)
			must := func(srv *httptest.Server, method, path, cookie string) (State, string) {
				t.Helper()
				st, set, err := call(srv, method, path, cookie)
				if err != nil {
					t.Fatal(err)
				}
				return st, set
			}
			ends := []struct {
				name string
				end  func(cookie string)
			}{
				{"flush", func(c string) { must(b, "POST", "/flush", c) }},
				{"cycle", func(c string) {
					if _, set := must(b, "POST", "/cycle", c); set == "" || set == "-" || set == c {
						t.Fatalf("cycle answered cookie %q", set)
					}
				}},
				{"operator-delete", func(c string) {
					tok, err := core.ParseToken(c)
					if err != nil {
						t.Fatal(err)
					}
					if err := plain.Delete(context.Background(), tok.ID()); err != nil {
						t.Fatal(err)
					}
				}},
			}
			staleSeen := false
			for _, e := range ends {
				_, c := must(b, "POST", "/init?client="+e.name, "")
				if st, _ := must(a, "GET", "/read", c); st.Client != e.name {
					t.Fatalf("%s: the other instance reads %+v", e.name, st)
				}
				e.end(c)
				start := time.Now()
				for {
					st, _ := must(a, "GET", "/read", c)
					if !st.Present {
						break
					}
					staleSeen = true
					if time.Since(start) > twoInstanceTTLBound {
						t.Fatalf("%s: the other instance still serves the ended session after %v (TTL %v)", e.name, time.Since(start), core.DefaultCacheTTL)
					}
					time.Sleep(2 * time.Millisecond)
				}
				t.Logf("%s: refused by the other instance after %v", e.name, time.Since(start).Round(time.Millisecond))
			}
			if !staleSeen {
				t.Error("the other instance never served an ended session: is its cache on?")
			}

			// Concurrent writes through both instances.
			_, c := must(b, "POST", "/init?client=writes", "")
			must(a, "GET", "/read", c) // cached there too
			const workers, each = 8, 8
			var wg sync.WaitGroup
			errs := make(chan error, 2*workers*each)
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						srv := []*httptest.Server{a, b}[(w+i)%2]
						if _, set, err := call(srv, "POST", fmt.Sprintf("/set?k=k%d_%d&v=%d", w, i, i), c); err != nil || (set != "" && set != c) {
							errs <- fmt.Errorf("set: %v (cookie %q)", err, set)
						}
						if _, set, err := call(srv, "POST", "/incr", c); err != nil || (set != "" && set != c) {
							errs <- fmt.Errorf("incr: %v (cookie %q)", err, set)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			tok, err := core.ParseToken(c)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := plain.Load(context.Background(), tok.ID(), time.Now())
			if err != nil || rec == nil {
				t.Fatalf("loading the session: %v, %v", rec, err)
			}
			lost := 0
			for w := range workers {
				for i := range each {
					if _, ok := rec.Data[fmt.Sprintf("k%d_%d", w, i)]; !ok {
						lost++
					}
				}
			}
			var n int64
			if err := plain.Codec().Unmarshal(rec.Data["counter"], &n); err != nil {
				t.Fatal(err)
			}
			if lost > 0 || n != workers*each {
				t.Errorf("after %d sets and %d increments through two instances: %d keys lost, counter %d", workers*each, workers*each, lost, n)
			}
		})
	}
}

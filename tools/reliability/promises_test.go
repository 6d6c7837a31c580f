package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// promiseApp serves the routes the promise tests race:
//
//	POST /write?k=K          Insert(K, true)
//	POST /login?delay=D      read the session, work D, CycleID, Insert("role", "admin")
//	POST /cart/add?item=I    Update("cart", append I) and Update("count", +1)
//	GET  /keys               the session's keys, as JSON
//
// A failed session call answers 503; the middleware answers a save that
// could not be made (a session cycled or deleted meanwhile) with its error
// handler. Only a 200 acknowledges a change.
func promiseApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		s := httpadapter.FromContext(ctx)
		q := r.URL.Query()
		var err error
		switch r.URL.Path {
		case "/write":
			err = s.Insert(ctx, q.Get("k"), true)
		case "/login":
			if _, err = s.Keys(ctx); err == nil {
				d, _ := time.ParseDuration(q.Get("delay"))
				time.Sleep(d)
				if err = s.CycleID(ctx); err == nil {
					err = s.Insert(ctx, "role", "admin")
				}
			}
		case "/cart/add":
			item := q.Get("item")
			if _, err = core.Update(ctx, s, "cart", func(cart []string, _ bool) ([]string, error) { return append(cart, item), nil }); err == nil {
				_, err = core.Update(ctx, s, "count", func(n int, _ bool) (int, error) { return n + 1, nil })
			}
		case "/keys":
			var keys []string
			if keys, err = s.Keys(ctx); err == nil {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(keys)
				return
			}
		default:
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
}

// promiseBackends opens each database with a migrated store.
func promiseBackends() []struct {
	name string
	open func(testing.TB) *bun.DB
} {
	return []struct {
		name string
		open func(testing.TB) *bun.DB
	}{
		{"postgres", dbtest.OpenPostgres},
		{"mysql", dbtest.OpenMySQL},
		{"sqlite", dbtest.OpenSQLite},
	}
}

// client sends requests with a fixed session cookie (the old token keeps
// being sent, as a browser tab that has not seen the new cookie yet would).
type client struct {
	base   string
	cookie string
}

// post returns the status and the session token of the Set-Cookie, if any.
func (c client) post(t testing.TB, path string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: httpadapter.DefaultCookieName, Value: c.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	token := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == httpadapter.DefaultCookieName && ck.MaxAge >= 0 {
			token = ck.Value
		}
	}
	return resp.StatusCode, token
}

func (c client) keys(t testing.TB) []string {
	req, _ := http.NewRequest(http.MethodGet, c.base+"/keys", nil)
	req.AddCookie(&http.Cookie{Name: httpadapter.DefaultCookieName, Value: c.cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys []string
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatalf("GET /keys: %v", err)
	}
	return keys
}

// TestCycleIDKeepsAcknowledgedWrites is issue 11's first scenario through
// the middleware, with real concurrent HTTP clients: 4 clients keep writing
// distinct keys to one session while a log-in request reads it, works a
// while, calls CycleID and inserts "role". Every write answered 200 under
// the old token must be in the cycled session, and none may land under the
// old id afterwards.
func TestCycleIDKeepsAcknowledgedWrites(t *testing.T) {
	for _, b := range promiseBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			store := dbtest.NewStore(t, b.open(t))
			m, err := httpadapter.New(store, httpadapter.WithSecure(false))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(m.Middleware(promiseApp()))
			defer srv.Close()
			rounds, acked, lostTotal := 12, 0, 0
			for round := range rounds {
				_, token := client{base: srv.URL}.post(t, "/write?k=seed")
				old := client{base: srv.URL, cookie: token}
				var (
					mu     sync.Mutex
					ackKey []string
					stop   atomic.Bool
					wg     sync.WaitGroup
				)
				for w := range 4 {
					wg.Go(func() {
						for j := 0; !stop.Load(); j++ {
							k := fmt.Sprintf("g%d-%d", w, j)
							status, set := old.post(t, "/write?k="+k)
							if status == http.StatusOK && (set == "" || set == token) {
								mu.Lock()
								ackKey = append(ackKey, k)
								mu.Unlock()
							}
						}
					})
				}
				time.Sleep(10 * time.Millisecond)
				status, newToken := old.post(t, "/login?delay="+strconv.Itoa(round*5)+"ms")
				if status != http.StatusOK || newToken == "" || newToken == token {
					stop.Store(true)
					wg.Wait()
					t.Fatalf("round %d: login answered %d with token change %v", round, status, newToken != token)
				}
				time.Sleep(20 * time.Millisecond) // writers keep sending the old token
				stop.Store(true)
				wg.Wait()
				keys := client{base: srv.URL, cookie: newToken}.keys(t)
				lost := 0
				for _, k := range ackKey {
					if !slices.Contains(keys, k) {
						lost++
					}
				}
				acked += len(ackKey)
				lostTotal += lost
				if lost > 0 {
					t.Errorf("round %d: %d of %d acknowledged writes missing from the cycled session", round, lost, len(ackKey))
				}
				tok, err := core.ParseToken(token)
				if err != nil {
					t.Fatal(err)
				}
				if rec, err := store.Load(context.Background(), tok.ID(), time.Now()); err != nil || rec != nil {
					t.Errorf("round %d: the old id holds a record after the cycle (%v)", round, err)
				}
			}
			t.Logf("%d rounds: %d writes acknowledged, %d lost", rounds, acked, lostTotal)
			if acked == 0 {
				t.Fatal("no write was acknowledged: the test tested nothing")
			}
		})
	}
}

// TestConcurrentUpdatesAddUp: 20 concurrent "add to cart" requests on one
// session keep all 20 items and count 20, on every backend.
func TestConcurrentUpdatesAddUp(t *testing.T) {
	for _, b := range promiseBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			store := dbtest.NewStore(t, b.open(t))
			m, err := httpadapter.New(store, httpadapter.WithSecure(false))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(m.Middleware(promiseApp()))
			defer srv.Close()
			for round := range 3 {
				_, token := client{base: srv.URL}.post(t, "/write?k=seed")
				c := client{base: srv.URL, cookie: token}
				const n = 20
				var wg sync.WaitGroup
				var failed atomic.Int32
				for i := range n {
					wg.Go(func() {
						if status, _ := c.post(t, fmt.Sprintf("/cart/add?item=i%02d", i)); status != http.StatusOK {
							failed.Add(1)
						}
					})
				}
				wg.Wait()
				if failed.Load() > 0 {
					t.Fatalf("round %d: %d requests failed", round, failed.Load())
				}
				sess := core.NewSession(store, token, nil)
				cart, _, err := core.Get[[]string](context.Background(), sess, "cart")
				if err != nil {
					t.Fatal(err)
				}
				count, _, err := core.Get[int](context.Background(), sess, "count")
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(cart)
				if len(slices.Compact(cart)) != n || count != n {
					t.Fatalf("round %d: %d concurrent adds left %d distinct items and count %d", round, n, len(cart), count)
				}
			}
		})
	}
}

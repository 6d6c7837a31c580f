package reliability

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// TestClientsThatGoAway: HTTP clients that send a request to a slow page
// (the application's own 20 ms query on the session store's pool) and
// hang up (a TCP reset) 1-3 ms later, beside clients that stay and add to
// a cart in sessions of their own. net/http cancels the request's context when its
// client goes away, which interrupts the slow query; on a pgx pool that
// leaves closed connections in database/sql's pool (RELIABILITY.md,
// "Requests cancelled on a pgx pool"). Every request of the clients that
// stay must answer 200 and every acknowledged add be in the session. It
// runs for at least 4 s and 100 adds, at most 10 s.
func TestClientsThatGoAway(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of abandoned requests; skipped under -short")
	}
	backends := []struct {
		name  string
		open  func(testing.TB) *bun.DB
		sleep string
	}{
		{"postgres", dbtest.OpenPostgres, "SELECT pg_sleep(0.02)"},
		{"mysql", dbtest.OpenMySQL, "SELECT SLEEP(0.02)"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			store := dbtest.NewStore(t, db)
			m, err := httpadapter.New(store, httpadapter.WithSecure(false))
			if err != nil {
				t.Fatal(err)
			}
			app := promiseApp()
			var slow atomic.Int64
			srv := httptest.NewServer(m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/report" {
					slow.Add(1)
					if _, err := db.DB.ExecContext(r.Context(), b.sleep); err != nil {
						http.Error(w, err.Error(), http.StatusServiceUnavailable)
						return
					}
					_, _ = w.Write([]byte("report"))
					return
				}
				app.ServeHTTP(w, r)
			})))
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")

			const leavers, stayers = 16, 8
			var (
				done    atomic.Bool
				wg      sync.WaitGroup
				ok      atomic.Int64
				failed  atomic.Int64
				firstEr atomic.Value
			)
			for range leavers {
				wg.Go(func() {
					for !done.Load() {
						c, err := net.Dial("tcp", addr)
						if err != nil {
							continue
						}
						// Close with a reset: no TIME_WAIT, so thousands of
						// these leave the machine's ports to other tests.
						_ = c.(*net.TCPConn).SetLinger(0)
						fmt.Fprintf(c, "POST /report HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", addr)
						time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Microsecond)
						c.Close()
					}
				})
			}
			tokens := make([]string, stayers)
			acked := make([]int, stayers)
			for i := range stayers {
				wg.Go(func() {
					hc := &http.Client{Transport: &http.Transport{}}
					defer hc.CloseIdleConnections()
					for !done.Load() {
						token, err := postCart(hc, srv.URL, tokens[i], fmt.Sprintf("i%d", acked[i]))
						if err != nil {
							failed.Add(1)
							firstEr.CompareAndSwap(nil, err.Error())
							continue
						}
						if tokens[i] == "" {
							tokens[i] = token
						}
						acked[i]++
						ok.Add(1)
					}
				})
			}
			start := time.Now()
			for failed.Load() == 0 && time.Since(start) < 10*time.Second && (time.Since(start) < 4*time.Second || ok.Load() < 100) {
				time.Sleep(50 * time.Millisecond)
			}
			done.Store(true)
			wg.Wait()
			t.Logf("%v: %d slow requests reached the application, each abandoned 1-3 ms after it was sent; %d cart adds answered 200, %d failed", time.Since(start).Round(time.Millisecond), slow.Load(), ok.Load(), failed.Load())
			if failed.Load() > 0 {
				t.Errorf("%d requests of clients that stayed failed, the first: %v", failed.Load(), firstEr.Load())
			}
			if slow.Load() < 100 {
				t.Errorf("only %d slow requests reached the application: the test tests little", slow.Load())
			}
			for i := range stayers {
				if tokens[i] == "" {
					t.Errorf("client %d: no add succeeded", i)
					continue
				}
				count, _, err := core.Get[int](context.Background(), core.NewSession(store, tokens[i], nil), "count")
				if err != nil {
					t.Fatal(err)
				}
				if count != acked[i] {
					t.Errorf("client %d: count %d after %d acknowledged adds", i, count, acked[i])
				}
			}
		})
	}
}

// postCart adds item to the cart of the session token ("" for a new one)
// and returns the token of the Set-Cookie, if any; an answer other than
// 200 is an error with its status and the first line of its body.
func postCart(hc *http.Client, base, token, item string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/cart/add?item="+item, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: httpadapter.DefaultCookieName, Value: token})
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body) // read whole, so the connection is reused
	if resp.StatusCode != http.StatusOK {
		first, _, _ := strings.Cut(string(body), "\n")
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, first)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == httpadapter.DefaultCookieName && ck.MaxAge >= 0 {
			token = ck.Value
		}
	}
	return token, nil
}

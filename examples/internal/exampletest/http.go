package exampletest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// CookieName is the session cookie the examples use (httpadapter's default).
const CookieName = "id"

// Visit is the outcome of one GET.
type Visit struct {
	Body   string
	Cookie *http.Cookie // the session Set-Cookie, or nil
}

// Get requests url with the session cookie value token (none if empty)
// and returns the body and the session cookie set, failing the test on
// anything but 200.
func Get(t testing.TB, url, token string) Visit {
	t.Helper()
	v, err := get(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// count checks that v shows count n.
func count(t testing.TB, v Visit, n int, what string) {
	t.Helper()
	if want := fmt.Sprintf("Current count: %d", n); strings.TrimSpace(v.Body) != want {
		t.Fatalf("%s: body %q, want %q", what, v.Body, want)
	}
}

// checkCookie checks the attributes the examples configure: not Secure,
// HttpOnly, SameSite=Strict, Path=/, Max-Age=10 (10 s of inactivity).
func checkCookie(t testing.TB, c *http.Cookie, what string) {
	t.Helper()
	if c == nil {
		t.Fatalf("%s: no %q Set-Cookie", what, CookieName)
	}
	if c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge != 10 {
		t.Errorf("%s: cookie %q, want not Secure, HttpOnly, SameSite=Strict, Path=/, Max-Age=10", what, c.String())
	}
	if c.Value == "" {
		t.Errorf("%s: empty cookie value", what)
	}
}

// RandomToken returns a well-formed session token that no server issued.
func RandomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Counter drives the seed's counter over HTTP against a running example at
// baseURL: a first visit counts 0 and sets a cookie, the same cookie counts
// 1 then 2, a bogus or unknown cookie gets a fresh session at 0, sessions
// are independent, concurrent clients each count correctly, and concurrent
// visits of one session lose no count. It returns
// the first session's cookie value (at count 3 on its next visit).
func Counter(t testing.TB, baseURL string) string {
	t.Helper()
	url := baseURL + "/"

	first := Get(t, url, "")
	count(t, first, 0, "first visit")
	checkCookie(t, first.Cookie, "first visit")
	token := first.Cookie.Value

	for n := 1; n <= 2; n++ {
		v := Get(t, url, token)
		count(t, v, n, fmt.Sprintf("visit %d with the cookie", n+1))
		if v.Cookie != nil && v.Cookie.Value != token {
			t.Fatalf("visit %d: the cookie changed from %q to %q", n+1, token, v.Cookie.Value)
		}
	}

	for _, bogus := range []string{"bogus", RandomToken()} {
		v := Get(t, url, bogus)
		count(t, v, 0, fmt.Sprintf("cookie %q", bogus))
		checkCookie(t, v.Cookie, fmt.Sprintf("cookie %q", bogus))
		if v.Cookie.Value == bogus || v.Cookie.Value == token {
			t.Fatalf("cookie %q: got cookie %q, want a fresh session", bogus, v.Cookie.Value)
		}
		count(t, Get(t, url, v.Cookie.Value), 1, "the fresh session's second visit")
	}

	// Concurrent clients, each with its own session.
	const clients, visits = 8, 5
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for range clients {
		wg.Go(func() {
			tok := ""
			for n := range visits {
				v, err := get(url, tok)
				if err != nil {
					errs <- err.Error()
					return
				}
				if want := fmt.Sprintf("Current count: %d", n); v.Body != want {
					errs <- fmt.Sprintf("concurrent client visit %d: %q, want %q", n, v.Body, want)
					return
				}
				if tok == "" {
					if v.Cookie == nil {
						errs <- "concurrent client: no cookie on the first visit"
						return
					}
					tok = v.Cookie.Value
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	// Concurrent visits of one session (a page firing requests at once)
	// never lose a count: the counter is an atomic core.Update.
	shared := Get(t, url, "")
	const burst = 20
	failed := make(chan error, burst)
	for range burst {
		wg.Go(func() {
			if _, err := get(url, shared.Cookie.Value); err != nil {
				failed <- err
			}
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Error(err)
	}
	count(t, Get(t, url, shared.Cookie.Value), 1+burst, fmt.Sprintf("after %d concurrent visits of one session", burst))
	return token
}

// get is Get without a testing.TB, for other goroutines.
func get(url, token string) (Visit, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return Visit{}, err
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: token})
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return Visit{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Visit{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Visit{}, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	v := Visit{Body: string(body)}
	for _, c := range resp.Cookies() {
		if c.Name == CookieName && c.MaxAge >= 0 {
			v.Cookie = c
		}
	}
	return v, nil
}

// Expiry checks the 10-second inactivity expiry: token, last saved at most
// a moment ago, still counts on after 5 s, then after 11 s without a visit
// it is gone and the visit counts 0 in a fresh session.
func Expiry(t testing.TB, baseURL, token string, next int) {
	t.Helper()
	url := baseURL + "/"
	time.Sleep(5 * time.Second)
	count(t, Get(t, url, token), next, "visit 5 s after the last one")
	time.Sleep(11 * time.Second)
	v := Get(t, url, token)
	count(t, v, 0, "visit 11 s after the last one (session expired)")
	if v.Cookie == nil || v.Cookie.Value == token {
		t.Fatalf("expired session: want a fresh cookie, got %v", v.Cookie)
	}
}

// Concurrent has clients visit the counter at baseURL at once, requests
// visits in all, each client on a session of its own: every visit must
// answer 200 with the client's next count (0, 1, 2, ...; a client whose
// first visit failed starts again at 0). It is the load
// that exposes a store whose statements do not survive a connection
// pooler (PgBouncer in transaction mode).
func Concurrent(t testing.TB, baseURL string, clients, requests int) {
	t.Helper()
	url := baseURL + "/"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
		ok     int
	)
	for c := range clients {
		n := requests / clients
		if c < requests%clients {
			n++
		}
		wg.Go(func() {
			tok, want := "", 0
			for range n {
				v, err := get(url, tok)
				if err == nil && strings.TrimSpace(v.Body) != fmt.Sprintf("Current count: %d", want) {
					err = fmt.Errorf("client %d: body %q, want count %d", c, v.Body, want)
				}
				if err == nil && tok == "" {
					if v.Cookie == nil {
						err = fmt.Errorf("client %d: no cookie on the first visit", c)
					} else {
						tok = v.Cookie.Value
					}
				}
				mu.Lock()
				if err != nil {
					failed = append(failed, err.Error())
				} else {
					ok++
					want++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != requests {
		for i, f := range failed {
			if i == 5 {
				t.Errorf("... and %d more", len(failed)-5)
				break
			}
			t.Error(f)
		}
		t.Fatalf("%d of %d requests from %d concurrent clients succeeded", ok, requests, clients)
	}
}

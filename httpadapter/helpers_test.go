package httpadapter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// countingStore wraps the real in-memory store to count calls and, when told
// to, fail them.
type countingStore struct {
	*core.MemoryStore
	loads, creates, saves, deletes atomic.Int64
	fail                           atomic.Bool
}

var errStoreDown = errors.New("store is down")

func newCountingStore() *countingStore { return &countingStore{MemoryStore: core.NewMemoryStore()} }

func (s *countingStore) calls() int64 {
	return s.loads.Load() + s.creates.Load() + s.saves.Load() + s.deletes.Load()
}

func (s *countingStore) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	s.loads.Add(1)
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.MemoryStore.Load(ctx, id, now)
}

func (s *countingStore) Create(ctx context.Context, rec *core.Record) error {
	s.creates.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.MemoryStore.Create(ctx, rec)
}

func (s *countingStore) Save(ctx context.Context, rec *core.Record) error {
	s.saves.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.MemoryStore.Save(ctx, rec)
}

func (s *countingStore) Delete(ctx context.Context, id core.ID) error {
	s.deletes.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.MemoryStore.Delete(ctx, id)
}

// clock is a settable clock for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// routes mirrors the routes of tower-sessions' HTTP test suite.
func routes(t testing.TB, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	must := func(err error) {
		if err != nil {
			t.Errorf("session operation: %v", err)
		}
	}
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if httpadapter.FromContext(r.Context()) == nil {
			t.Error("no session in the request context")
		}
		fmt.Fprint(w, "Hello, world!")
	})
	mux.HandleFunc("/insert", func(w http.ResponseWriter, r *http.Request) {
		must(httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 42))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := core.Get[int](r.Context(), httpadapter.FromContext(r.Context()), "foo")
		must(err)
		if !ok {
			http.Error(w, "no foo", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, v)
	})
	mux.HandleFunc("/get_value", func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := core.Get[int](r.Context(), httpadapter.FromContext(r.Context()), "foo")
		must(err)
		if !ok {
			fmt.Fprint(w, "None")
			return
		}
		fmt.Fprintf(w, "Some(%d)", v)
	})
	mux.HandleFunc("/remove_value", func(w http.ResponseWriter, r *http.Request) {
		_, err := httpadapter.FromContext(r.Context()).Remove(r.Context(), "foo")
		must(err)
	})
	mux.HandleFunc("/cycle_id", func(w http.ResponseWriter, r *http.Request) {
		must(httpadapter.FromContext(r.Context()).CycleID(r.Context()))
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		must(httpadapter.FromContext(r.Context()).Flush(r.Context()))
	})
	mux.HandleFunc("/set_expiry", func(w http.ResponseWriter, r *http.Request) {
		httpadapter.FromContext(r.Context()).SetExpiry(core.AtDateTime(now().Add(24 * time.Hour)))
	})
	mux.HandleFunc("/remove_expiry", func(w http.ResponseWriter, r *http.Request) {
		httpadapter.FromContext(r.Context()).SetExpiry(core.OnSessionEnd())
	})
	return mux
}

// app builds the test application on store with opts.
func app(t testing.TB, store core.Store, opts ...httpadapter.Option) http.Handler {
	t.Helper()
	m, err := httpadapter.New(store, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m.Middleware(routes(t, time.Now))
}

// appClock is app with a settable clock, also used by the routes.
func appClock(t testing.TB, store core.Store, c *clock, opts ...httpadapter.Option) http.Handler {
	t.Helper()
	m, err := httpadapter.New(store, append([]httpadapter.Option{httpadapter.WithClock(c.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m.Middleware(routes(t, c.Now))
}

// do serves one GET request for path, sending cookieHeader (if not "") as
// the Cookie header.
func do(t testing.TB, h http.Handler, path, cookieHeader string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if cookieHeader != "" {
		req.Header.Set("Cookie", cookieHeader)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// sessionCookie returns the one Set-Cookie of res, parsed, and its raw text.
func sessionCookie(t testing.TB, rec *httptest.ResponseRecorder) (*http.Cookie, string) {
	t.Helper()
	all := rec.Result().Header.Values("Set-Cookie")
	if len(all) != 1 {
		t.Fatalf("want exactly one Set-Cookie, got %q", all)
	}
	c, err := http.ParseSetCookie(all[0])
	if err != nil {
		t.Fatalf("parsing Set-Cookie %q: %v", all[0], err)
	}
	return c, all[0]
}

// noCookie fails if res sets a cookie.
func noCookie(t testing.TB, rec *httptest.ResponseRecorder) {
	t.Helper()
	if all := rec.Result().Header.Values("Set-Cookie"); len(all) != 0 {
		t.Fatalf("want no Set-Cookie, got %q", all)
	}
}

// pair is the Cookie header that sends c back.
func pair(c *http.Cookie) string { return c.Name + "=" + c.Value }

// maxAge returns the Max-Age attribute of a raw Set-Cookie and whether it has one.
func maxAge(t testing.TB, raw string) (int, bool) {
	t.Helper()
	for _, part := range strings.Split(raw, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "Max-Age") {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("bad Max-Age in %q", raw)
			}
			return n, true
		}
	}
	return 0, false
}

// hasAttr reports whether raw has the attribute attr (e.g. "HttpOnly",
// "SameSite=Lax"), case-insensitively.
func hasAttr(raw, attr string) bool {
	for _, part := range strings.Split(raw, ";")[1:] {
		if strings.EqualFold(strings.TrimSpace(part), attr) {
			return true
		}
	}
	return false
}

// within fails unless got is want +-1.
func within(t testing.TB, got, want int) {
	t.Helper()
	if got < want-1 || got > want+1 {
		t.Fatalf("Max-Age %d, want %d +-1", got, want)
	}
}

// recordOf loads the stored record of a plain cookie value.
func recordOf(t testing.TB, store core.Store, value string, now time.Time) *core.Record {
	t.Helper()
	tok, err := core.ParseToken(value)
	if err != nil {
		t.Fatalf("cookie value %q is not a token: %v", value, err)
	}
	rec, err := store.Load(context.Background(), tok.ID(), now)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, httpadapter.KeyLen) }

package httpadapter_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// logBuffer collects log output of a test, safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func manager(t testing.TB, store core.Store, opts ...httpadapter.Option) *httpadapter.Manager {
	t.Helper()
	m, err := httpadapter.New(store, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func TestFromContextOutsideMiddleware(t *testing.T) {
	// A handler mounted without the middleware gets an error naming it,
	// not a nil dereference.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := httpadapter.FromContext(r.Context())
		if err := s.Insert(r.Context(), "k", 1); !errors.Is(err, core.ErrNoSession) || !strings.Contains(err.Error(), "Middleware") {
			t.Errorf("Insert outside the middleware = %v; want core.ErrNoSession naming the middleware", err)
		}
		if _, _, err := core.Get[int](r.Context(), s, "k"); !errors.Is(err, core.ErrNoSession) {
			t.Errorf("Get outside the middleware = %v", err)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if rec := do(t, h, "/", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
}

// A request whose changes a concurrent log-out dropped is not acknowledged:
// 409 from the default error handler, no cookie, logged at Info.
func TestSupersededIsNotAcknowledged(t *testing.T) {
	store := core.NewMemoryStore()
	logger, logs := newLogger()
	m := manager(t, store, httpadapter.WithLogger(logger))
	loaded, proceed := make(chan struct{}), make(chan struct{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := httpadapter.FromContext(r.Context())
		switch r.URL.Path {
		case "/login":
			must(0, s.Insert(r.Context(), "user", "ada"))
		case "/logout":
			must(0, s.Flush(r.Context()))
		case "/slow-write":
			must(s.Keys(r.Context()))
			close(loaded)
			<-proceed
			must(0, s.Insert(r.Context(), "cart", "book"))
		}
		_, _ = w.Write([]byte("ok"))
	}))
	c, _ := sessionCookie(t, do(t, h, "/login", ""))
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- do(t, h, "/slow-write", pair(c)) }()
	<-loaded
	do(t, h, "/logout", pair(c))
	close(proceed)
	rec := <-done
	if rec.Code != http.StatusConflict {
		t.Fatalf("a write dropped by a concurrent log-out answered %d, want 409", rec.Code)
	}
	noCookie(t, rec)
	if got := logs.String(); !strings.Contains(got, "level=INFO") || strings.Contains(got, "level=ERROR") {
		t.Fatalf("logs = %s; want the dropped write at INFO, no ERROR", got)
	}
}

func TestMaxLifetimeCapsMaxAge(t *testing.T) {
	clk := newClock()
	store := core.NewMemoryStore()
	h := appClock(t, store, clk, httpadapter.WithExpiry(core.OnInactivity(2*time.Hour)),
		httpadapter.WithMaxLifetime(time.Hour), httpadapter.WithAlwaysSave(true))
	c, raw := sessionCookie(t, do(t, h, "/insert", ""))
	if age, ok := maxAge(t, raw); !ok || age != 3600 {
		t.Fatalf("Max-Age = %d, %v at creation; want 3600 (the cap, not the 2 h idle time)", age, ok)
	}
	clk.Advance(40 * time.Minute)
	_, raw = sessionCookie(t, do(t, h, "/get", pair(c)))
	if age, ok := maxAge(t, raw); !ok || age != 1200 {
		t.Fatalf("Max-Age = %d, %v after 40 minutes; want 1200", age, ok)
	}
	clk.Advance(21 * time.Minute)
	if rec := do(t, h, "/get", pair(c)); rec.Code != http.StatusNotFound {
		t.Fatalf("session served after its cap: %d %q", rec.Code, rec.Body.String())
	}
	if _, err := httpadapter.New(store, httpadapter.WithMaxLifetime(-time.Second)); err == nil {
		t.Fatal("a negative lifetime was accepted")
	}
}

func TestMaxRecordSizeOption(t *testing.T) {
	m := manager(t, core.NewMemoryStore(), httpadapter.WithMaxRecordSize(64))
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "k", strings.Repeat("x", 100))
		var tooLarge *core.RecordTooLargeError
		if !errors.As(err, &tooLarge) || tooLarge.Limit != 64 {
			t.Errorf("Insert = %v; want a RecordTooLargeError with limit 64", err)
		}
	}))
	noCookie(t, do(t, h, "/", ""))
}

func TestStoreCallsPerRequest(t *testing.T) {
	store := newCountingStore()
	h := app(t, store, hour)
	count := func(path, cookie string) int64 {
		t.Helper()
		before := store.calls()
		do(t, h, path, cookie)
		return store.calls() - before
	}
	if n := count("/", ""); n != 0 {
		t.Errorf("untouched request, no cookie: %d store calls, want 0", n)
	}
	if n := count("/insert", ""); n != 1 {
		t.Errorf("new session: %d store calls, want 1 (create)", n)
	}
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	if n := count("/", pair(c)); n != 0 {
		t.Errorf("untouched request with a cookie: %d store calls, want 0", n)
	}
	if n := count("/get", pair(c)); n != 1 {
		t.Errorf("read: %d store calls, want 1", n)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s := httpadapter.FromContext(r.Context())
		n, _, err := core.Get[int](r.Context(), s, "foo")
		if err == nil {
			err = s.Insert(r.Context(), "foo", n+1)
		}
		if err != nil {
			t.Error(err)
		}
	})
	rmw := manager(t, store, hour).Middleware(mux)
	before := store.calls()
	rec := do(t, rmw, "/", pair(c))
	if n := store.calls() - before; n != 2 {
		t.Errorf("read-modify-write: %d store calls, want 2", n)
	}
	if c2, _ := sessionCookie(t, rec); c2.Value != c.Value {
		t.Error("token changed on a plain save")
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "43" {
		t.Errorf("after read-modify-write: %q", body)
	}
}

func TestServerErrorNotSaved(t *testing.T) {
	store := newCountingStore()
	m := manager(t, store)
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", r.URL.Query().Get("v")); err != nil {
			t.Error(err)
		}
		if r.URL.Query().Has("fail") {
			http.Error(w, "boom", http.StatusServiceUnavailable)
		}
	}))
	rec := do(t, h, "/?v=1&fail", "")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
	noCookie(t, rec)
	if store.Len() != 0 || store.creates.Load() != 0 {
		t.Fatal("a 5xx response created a session")
	}
	c, _ := sessionCookie(t, do(t, h, "/?v=1", ""))
	rec = do(t, h, "/?v=2&fail", pair(c))
	noCookie(t, rec)
	got, _, err := core.Get[string](context.Background(), core.NewSession(store, c.Value, nil), "foo")
	if err != nil || got != "1" {
		t.Fatalf("after a 5xx the stored value is %q (%v), want the old one", got, err)
	}
}

func TestStoreFailure(t *testing.T) {
	store := newCountingStore()
	logger, logs := newLogger()
	var handled error
	m := manager(t, store, httpadapter.WithLogger(logger), httpadapter.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		handled = err
		if httpadapter.FromContext(r.Context()) == nil {
			t.Error("the error handler's request has no session")
		}
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "custom error page")
	}))
	var writeErr error
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		_, writeErr = io.WriteString(w, `{"ok":true}`)
	}))
	good, _ := sessionCookie(t, do(t, h, "/", ""))

	store.fail.Store(true)
	rec := do(t, h, "/", "")
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != "custom error page" {
		t.Fatalf("got %d %q, want the error handler's 500", rec.Code, rec.Body)
	}
	if !errors.Is(handled, errStoreDown) {
		t.Fatalf("error handler got %v", handled)
	}
	if !errors.Is(writeErr, httpadapter.ErrSaveFailed) {
		t.Fatalf("the handler's Write returned %v, want ErrSaveFailed", writeErr)
	}
	noCookie(t, rec)
	if !strings.Contains(logs.String(), "store is down") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("failure not logged: %s", logs)
	}

	// A session read that fails in Commit (always-save loads first) goes the same way,
	// and the token never reaches the log.
	h = manager(t, store, httpadapter.WithLogger(logger), httpadapter.WithAlwaysSave(true)).Middleware(routes(t, time.Now))
	rec = do(t, h, "/", pair(good))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "Internal Server Error") {
		t.Fatalf("default error handler: %d %q", rec.Code, rec.Body)
	}
	if strings.Contains(logs.String(), good.Value) {
		t.Fatal("a token was logged")
	}
	if !strings.Contains(logs.String(), string(must(core.ParseToken(good.Value)).ID())) {
		t.Fatalf("the session id was not logged: %s", logs)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSaveBeforeFirstByte(t *testing.T) {
	store := core.NewMemoryStore()
	var storedAtWrite int
	h := manager(t, store).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
			t.Error(err)
		}
		io.WriteString(w, "hello")
		storedAtWrite = store.Len()
		// Headers set now are too late for the client.
		w.Header().Set("X-Late", "1")
	}))
	rec := do(t, h, "/", "")
	// The recorder snapshots the headers when they are written.
	res := rec.Result()
	if res.Header.Get("X-Late") != "" {
		t.Fatal("the recorder did not snapshot headers at the first write")
	}
	if len(res.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("the cookie was not set before the first byte: %v", res.Header)
	}
	if storedAtWrite != 1 {
		t.Fatalf("%d records when the first byte was written, want 1", storedAtWrite)
	}
}

func TestInformationalStatusDoesNotCommit(t *testing.T) {
	h := manager(t, core.NewMemoryStore()).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
			t.Error(err)
		}
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(res.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("final response %d %v: want 200 with the cookie", res.StatusCode, res.Header)
	}
}

func TestLateChanges(t *testing.T) {
	store := core.NewMemoryStore()
	logger, logs := newLogger()
	late := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "body first")
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "late", r.URL.Query().Get("v")); err != nil {
			t.Error(err)
		}
	})
	h := manager(t, store, httpadapter.WithLogger(logger)).Middleware(late)
	// A new session cannot get its cookie any more: it is not created.
	rec := do(t, h, "/?v=1", "")
	noCookie(t, rec)
	if store.Len() != 0 {
		t.Fatal("an orphan session was created")
	}
	if !strings.Contains(logs.String(), "would need a new cookie") {
		t.Fatalf("no warning: %s", logs)
	}

	// An existing session whose cookie need not change is saved, silently.
	c, _ := sessionCookie(t, do(t, app(t, store), "/insert", ""))
	before := logs.String()
	noCookie(t, do(t, h, "/?v=2", pair(c)))
	got, _, err := core.Get[string](context.Background(), core.NewSession(store, c.Value, nil), "late")
	if err != nil || got != "2" {
		t.Fatalf("late change not saved: %q %v", got, err)
	}
	if logs.String() != before {
		t.Fatalf("unexpected log: %s", strings.TrimPrefix(logs.String(), before))
	}

	// With an inactivity expiry the cookie's Max-Age would need renewing: saved and reported.
	hi := manager(t, store, httpadapter.WithLogger(logger), hour).Middleware(late)
	noCookie(t, do(t, hi, "/?v=3", pair(c)))
	got, _, err = core.Get[string](context.Background(), core.NewSession(store, c.Value, nil), "late")
	if err != nil || got != "3" {
		t.Fatalf("late change not saved: %q %v", got, err)
	}
	if !strings.Contains(logs.String(), "Max-Age could not be updated") {
		t.Fatalf("no warning: %s", logs)
	}
	if strings.Contains(logs.String(), c.Value) {
		t.Fatal("a token was logged")
	}
}

func TestResponseControllerThroughWrapper(t *testing.T) {
	store := core.NewMemoryStore()
	logger, logs := newLogger()
	m := manager(t, store, httpadapter.WithLogger(logger), httpadapter.WithSecure(false), httpadapter.WithSameSite(http.SameSiteLaxMode))
	proceed := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
			t.Error(err)
		}
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline through the wrapper: %v", err)
		}
		io.WriteString(w, "first\n")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-proceed // the client has the headers and the first line before the handler ends
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/flusher", func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 2); err != nil {
			t.Error(err)
		}
		w.(http.Flusher).Flush() // flushing with nothing written sends the headers
		<-proceed
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 3); err != nil {
			t.Error(err)
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
	})
	mux.HandleFunc("/readfrom", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Error("the wrapper hides io.ReaderFrom")
		}
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 4); err != nil {
			t.Error(err)
		}
		io.Copy(w, strings.NewReader("copied"))
	})
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()

	for _, path := range []string{"/flush", "/flusher"} {
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Header.Values("Set-Cookie")) != 1 {
			t.Errorf("%s: no cookie with the flushed headers: %v", path, res.Header)
		}
		if path == "/flush" {
			line, err := bufio.NewReader(res.Body).ReadString('\n')
			if err != nil || line != "first\n" {
				t.Errorf("first flushed line %q %v", line, err)
			}
		}
		proceed <- struct{}{}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	before := store.Len()
	res, err := srv.Client().Get(srv.URL + "/hijack")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "hijacked" {
		t.Fatalf("hijacked body %q", body)
	}
	if store.Len() != before+1 {
		t.Error("the session of a hijacked request was not saved")
	}
	if !strings.Contains(logs.String(), "hijacked") {
		t.Errorf("the cookie that could not be sent was not reported: %s", logs)
	}

	res, err = srv.Client().Get(srv.URL + "/readfrom")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "copied" || len(res.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("ReadFrom: %q %v", body, res.Header)
	}
}

func TestFlushWithRecorder(t *testing.T) {
	h := manager(t, core.NewMemoryStore()).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
			t.Error(err)
		}
		w.(http.Flusher).Flush()
	}))
	rec := do(t, h, "/", "")
	if !rec.Flushed {
		t.Fatal("Flush did not reach the underlying writer")
	}
	sessionCookie(t, rec)
}

func TestDuplicateCookies(t *testing.T) {
	store := core.NewMemoryStore()
	h := app(t, store)
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	for _, header := range []string{
		"id=malformed; " + pair(c),
		pair(c) + "; id=malformed",
		"other=1; id=; id=" + c.Value + "; id=AAAAAAAAAAAAAAAAAAAAAA",
	} {
		rec := do(t, h, "/get", header)
		if rec.Body.String() != "42" {
			t.Errorf("%q: body %q", header, rec.Body)
		}
		noCookie(t, rec)
	}
	// Two Cookie header lines (as HTTP/2 sends them).
	req := httptest.NewRequest(http.MethodGet, "/get", nil)
	req.Header.Add("Cookie", "id=junk")
	req.Header.Add("Cookie", pair(c))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Body.String() != "42" {
		t.Errorf("two Cookie lines: body %q", rec.Body)
	}

	// Signed: a forged cookie before the real one does not hide it.
	hs := app(t, store, httpadapter.WithSignedKeys(key(7)))
	cs, _ := sessionCookie(t, do(t, hs, "/insert", ""))
	forged := c.Value + "." + strings.Repeat("A", 43)
	if body := do(t, hs, "/get", "id="+forged+"; "+pair(cs)).Body.String(); body != "42" {
		t.Errorf("signed duplicate: %q", body)
	}
}

func TestPercentEncodedCookie(t *testing.T) {
	h := app(t, core.NewMemoryStore())
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	encoded := fmt.Sprintf("%%%02X", c.Value[0]) + c.Value[1:]
	if body := do(t, h, "/get", "id="+encoded).Body.String(); body != "42" {
		t.Fatalf("percent-encoded %q: %q", encoded, body)
	}
	if body := do(t, h, "/get", `id="`+c.Value+`"`).Body.String(); body != "42" {
		t.Fatalf("quoted: %q", body)
	}
	if u := url.QueryEscape(c.Value); u != c.Value {
		t.Fatalf("tokens should need no escaping: %q", u)
	}
	// A bad escape is ignored like any malformed value.
	rec := do(t, h, "/get_value", "id=%zz")
	if rec.Body.String() != "None" {
		t.Fatalf("bad escape: %q", rec.Body)
	}
}

func TestManyCookies(t *testing.T) {
	h := app(t, core.NewMemoryStore(), httpadapter.WithSignedKeys(key(3)))
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	forged := "id=" + c.Value[:core.TokenLen] + "." + strings.Repeat("B", 43) + "; "

	// Within net/http's limit of 3000 cookies a request, the session cookie
	// is found behind any number of others, forged ones included.
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "c%d=v; ", i)
	}
	b.WriteString(strings.Repeat(forged, 900))
	rec := do(t, h, "/get", b.String()+pair(c))
	if body := rec.Body.String(); body != "42" {
		t.Fatalf("the session cookie after 2900 others: %q", body)
	}
	noCookie(t, rec)

	// Above it, net/http ignores the Cookie header (GODEBUG
	// httpcookiemaxnum): no session, no removal cookie, and cheap.
	b.Reset()
	b.WriteString(strings.Repeat(forged, 5000))
	for i := range 10000 {
		fmt.Fprintf(&b, "c%d=v; ", i)
	}
	start := time.Now()
	rec = do(t, h, "/get_value", b.String()+pair(c))
	d := time.Since(start)
	if rec.Body.String() != "None" {
		t.Fatalf("5000 session cookies and 10000 others: %q", rec.Body)
	}
	noCookie(t, rec)
	if d > 100*time.Millisecond {
		t.Fatalf("5000 session cookies and 10000 others took %v", d)
	}
}

func TestConcurrentRequestsOneSession(t *testing.T) {
	store := core.NewMemoryStore()
	m := manager(t, store)
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.URL.Query().Get("k")
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), k, k); err != nil {
			t.Error(err)
		}
	}))
	c, _ := sessionCookie(t, do(t, h, "/?k=first", ""))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			rec := do(t, h, fmt.Sprintf("/?k=k%02d", i), pair(c))
			if rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
			if c2, _ := sessionCookie(t, rec); c2.Value != c.Value {
				t.Errorf("token changed")
			}
		})
	}
	wg.Wait()
	keys, err := core.NewSession(store, c.Value, nil).Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 51 {
		t.Fatalf("%d keys survived, want 51: %v", len(keys), keys)
	}
}

func TestCacheHeadersMerge(t *testing.T) {
	for _, tc := range []struct{ cc, vary, wantCC, wantVary string }{
		{"", "", "private", "Cookie"},
		{"public, max-age=60, s-maxage=600", "Accept-Encoding", "max-age=60, private", "Accept-Encoding, Cookie"},
		{"no-store", "cookie", "no-store", "cookie"},
		{"private, max-age=5", "*", "private, max-age=5", "*"},
		{`no-cache="Set-Cookie"`, "", `no-cache="Set-Cookie", private`, "Cookie"},
	} {
		h := manager(t, core.NewMemoryStore()).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.cc != "" {
				w.Header().Set("Cache-Control", tc.cc)
			}
			if tc.vary != "" {
				w.Header().Set("Vary", tc.vary)
			}
			if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "foo", 1); err != nil {
				t.Error(err)
			}
		}))
		rec := do(t, h, "/", "")
		sessionCookie(t, rec)
		if got := strings.Join(rec.Header().Values("Cache-Control"), ", "); got != tc.wantCC {
			t.Errorf("Cache-Control %q -> %q, want %q", tc.cc, got, tc.wantCC)
		}
		if got := strings.Join(rec.Header().Values("Vary"), ", "); got != tc.wantVary {
			t.Errorf("Vary %q -> %q, want %q", tc.vary, got, tc.wantVary)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  func(keys ...[]byte) httpadapter.Option
	}{{"signed", httpadapter.WithSignedKeys}, {"private", httpadapter.WithPrivateKeys}} {
		t.Run(mode.name, func(t *testing.T) {
			store := core.NewMemoryStore()
			oldKey, newKey := key(10), bytes.Repeat([]byte{11}, 48) // any secret of at least KeyLen bytes
			old := app(t, store, mode.opt(oldKey))
			rotated := app(t, store, mode.opt(newKey, oldKey))
			retired := app(t, store, mode.opt(newKey))

			cOld, _ := sessionCookie(t, do(t, old, "/insert", ""))
			if body := do(t, rotated, "/get", pair(cOld)).Body.String(); body != "42" {
				t.Fatalf("rotated manager rejects a cookie of the old key: %q", body)
			}
			cNew, _ := sessionCookie(t, do(t, rotated, "/insert", ""))
			if body := do(t, retired, "/get", pair(cNew)).Body.String(); body != "42" {
				t.Fatalf("the first key does not sign/encrypt new cookies: %q", body)
			}
			if body := do(t, old, "/get_value", pair(cNew)).Body.String(); body != "None" {
				t.Fatalf("a cookie of the new key verifies under the old one: %q", body)
			}
			if body := do(t, retired, "/get_value", pair(cOld)).Body.String(); body != "None" {
				t.Fatalf("a retired key still verifies: %q", body)
			}
		})
	}
}

func TestPartitioned(t *testing.T) {
	h := app(t, core.NewMemoryStore(), httpadapter.WithPartitioned(true), httpadapter.WithSameSite(http.SameSiteNoneMode))
	c, raw := sessionCookie(t, do(t, h, "/insert", ""))
	if !c.Partitioned || !hasAttr(raw, "Partitioned") || !c.Secure {
		t.Fatalf("session cookie %q: want Partitioned and Secure", raw)
	}
	removal, raw := sessionCookie(t, do(t, h, "/flush", pair(c)))
	if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 || !hasAttr(raw, "Partitioned") {
		t.Fatalf("removal cookie %q: want Max-Age=0 and Partitioned", raw)
	}
	_, raw = sessionCookie(t, do(t, app(t, core.NewMemoryStore()), "/insert", ""))
	if hasAttr(raw, "Partitioned") {
		t.Fatalf("partitioned by default: %q", raw)
	}
}

func TestHostPrefixedName(t *testing.T) {
	h := app(t, core.NewMemoryStore(), httpadapter.WithCookieName("__Host-id"))
	c, raw := sessionCookie(t, do(t, h, "/insert", ""))
	if c.Name != "__Host-id" || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Fatalf("%q breaks the __Host- rules", raw)
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "42" {
		t.Fatalf("body %q", body)
	}
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	store := core.NewMemoryStore()
	for name, opts := range map[string][]httpadapter.Option{
		"short signing key":      {httpadapter.WithSignedKeys(make([]byte, 16))},
		"short private key":      {httpadapter.WithPrivateKeys(make([]byte, 31))},
		"second key too short":   {httpadapter.WithSignedKeys(key(1), key(2)[:31])},
		"signed and private":     {httpadapter.WithSignedKeys(key(1)), httpadapter.WithPrivateKeys(key(2))},
		"empty name":             {httpadapter.WithCookieName("")},
		"name with space":        {httpadapter.WithCookieName("a b")},
		"name with =":            {httpadapter.WithCookieName("a=b")},
		"path with ;":            {httpadapter.WithPath("/;x")},
		"domain with ;":          {httpadapter.WithDomain("a;b")},
		"none without secure":    {httpadapter.WithSameSite(http.SameSiteNoneMode), httpadapter.WithSecure(false)},
		"partitioned, no secure": {httpadapter.WithPartitioned(true), httpadapter.WithSecure(false)},
		"__Host- with domain":    {httpadapter.WithCookieName("__Host-id"), httpadapter.WithDomain("example.com")},
		"__Host- with path":      {httpadapter.WithCookieName("__Host-id"), httpadapter.WithPath("/app")},
		"__host- not secure":     {httpadapter.WithCookieName("__host-id"), httpadapter.WithSecure(false)},
		"__Secure- not secure":   {httpadapter.WithCookieName("__Secure-id"), httpadapter.WithSecure(false)},
		"path with newline":      {httpadapter.WithPath("/a\nb")},
		"domain with space":      {httpadapter.WithDomain("a b.com")},
		"unknown SameSite":       {httpadapter.WithSameSite(http.SameSite(99))},
		"negative lifetime":      {httpadapter.WithSessionEndLifetime(-time.Hour)},
	} {
		if _, err := httpadapter.New(store, opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := httpadapter.New(nil); err == nil {
		t.Error("nil store: no error")
	}
}

func TestRequestContextKeepsParent(t *testing.T) {
	type ctxKey struct{}
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "v"))
	reason := errors.New("client went away")
	h := manager(t, core.NewMemoryStore()).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if ctx.Value(ctxKey{}) != "v" {
			t.Error("a value of the parent context is lost")
		}
		child, stop := context.WithCancel(ctx)
		defer stop()
		cancel(reason)
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("cancelling the request's context does not reach a derived context")
		}
		if !errors.Is(context.Cause(child), reason) || !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("cause %v, err %v", context.Cause(child), ctx.Err())
		}
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(parent)
	h.ServeHTTP(httptest.NewRecorder(), req)
}

// Package middleware compares the net/http session middleware of sqlsessions
// (httpadapter on core.MemoryStore) with alexedwards/scs v2 (LoadAndSave on
// its memstore) on the same three requests, so that one run prints them side
// by side:
//
//	go test -run='^$' -bench=Middleware -benchmem ./bench/middleware
//
// Every request carries the cookie of an existing session holding one integer;
// the handler leaves the session alone (untouched), reads the integer (read),
// or reads it and stores it plus one (write: a save and a Set-Cookie).
package middleware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// benchWriter is a minimal reusable ResponseWriter, the same for both sides,
// so the figures count the middleware's allocations and not a recorder's.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

var cases = []string{"untouched", "read", "write"}

// side is one library: handlers for the three cases wrapped in its
// middleware, and a fresh session's cookie.
type side struct {
	name  string
	setup func(b *testing.B, kind string) (http.Handler, *http.Cookie)
}

func sqlsessionsSide(b *testing.B, kind string) (http.Handler, *http.Cookie) {
	m, err := httpadapter.New(core.NewMemoryStore(), httpadapter.WithExpiry(core.OnInactivity(time.Hour)))
	if err != nil {
		b.Fatal(err)
	}
	get := func(r *http.Request) int {
		n, _, err := core.Get[int](r.Context(), httpadapter.FromContext(r.Context()), "n")
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	put := func(r *http.Request, n int) {
		if err := httpadapter.FromContext(r.Context()).Insert(r.Context(), "n", n); err != nil {
			b.Fatal(err)
		}
	}
	return handlers(b, kind, m.Middleware, get, put)
}

func scsSide(b *testing.B, kind string) (http.Handler, *http.Cookie) {
	sm := scs.New()
	sm.Store = memstore.NewWithCleanupInterval(0)
	sm.Lifetime = time.Hour
	get := func(r *http.Request) int { return sm.GetInt(r.Context(), "n") }
	put := func(r *http.Request, n int) { sm.Put(r.Context(), "n", n) }
	return handlers(b, kind, sm.LoadAndSave, get, put)
}

func handlers(b *testing.B, kind string, mw func(http.Handler) http.Handler, get func(*http.Request) int, put func(*http.Request, int)) (http.Handler, *http.Cookie) {
	write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { put(r, get(r)+1) })
	rec := httptest.NewRecorder()
	mw(write).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		b.Fatalf("creating the session set %d cookies", len(cookies))
	}
	var h http.Handler
	switch kind {
	case "untouched":
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	case "read":
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if get(r) != 1 {
				b.Fatal("read the wrong value")
			}
		})
	default:
		h = write
	}
	return mw(h), cookies[0]
}

func BenchmarkMiddleware(b *testing.B) {
	for _, s := range []side{{"sqlsessions", sqlsessionsSide}, {"scs", scsSide}} {
		b.Run(s.name, func(b *testing.B) {
			for _, kind := range cases {
				b.Run(kind, func(b *testing.B) {
					h, cookie := s.setup(b, kind)
					req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(context.Background())
					req.AddCookie(cookie)
					w := &benchWriter{h: http.Header{}}
					b.ReportAllocs()
					for b.Loop() {
						clear(w.h)
						h.ServeHTTP(w, req)
					}
					if got := len(w.h["Set-Cookie"]); (kind == "write") != (got == 1) {
						b.Fatalf("%s: %d Set-Cookie headers", kind, got)
					}
				})
			}
		})
	}
}

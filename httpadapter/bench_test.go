package httpadapter_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// benchWriter is a minimal reusable ResponseWriter, so the benchmarks count
// the middleware's allocations and not a recorder's.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) reset()                      { clear(w.h); w.code = 0 }

// BenchmarkMiddleware measures one request through the middleware on the
// MemoryStore carrying the cookie of an existing session, whose handler
// leaves the session alone (untouched), reads a value (read), or reads and
// updates it (write).
func BenchmarkMiddleware(b *testing.B) {
	handlers := map[string]http.HandlerFunc{
		"untouched": func(w http.ResponseWriter, r *http.Request) {},
		"read": func(w http.ResponseWriter, r *http.Request) {
			if _, _, err := core.Get[int](r.Context(), httpadapter.FromContext(r.Context()), "n"); err != nil {
				b.Fatal(err)
			}
		},
		"write": func(w http.ResponseWriter, r *http.Request) {
			s := httpadapter.FromContext(r.Context())
			n, _, err := core.Get[int](r.Context(), s, "n")
			if err == nil {
				err = s.Insert(r.Context(), "n", n+1)
			}
			if err != nil {
				b.Fatal(err)
			}
		},
	}
	modes := []struct {
		name string
		opts []httpadapter.Option
	}{
		{"", nil},
		{"/signed", []httpadapter.Option{httpadapter.WithSignedKeys(key(1))}},
		{"/private", []httpadapter.Option{httpadapter.WithPrivateKeys(key(2))}},
	}
	for _, mode := range modes {
		for _, name := range []string{"untouched", "read", "write"} {
			benchmarkCase(b, name+mode.name, handlers[name], handlers["write"], mode.opts)
		}
	}
}

func benchmarkCase(b *testing.B, name string, handler, create http.Handler, opts []httpadapter.Option) {
	b.Run(name, func(b *testing.B) {
		m, err := httpadapter.New(core.NewMemoryStore(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		h := m.Middleware(handler)
		// Create the session.
		rec := httptest.NewRecorder()
		h2 := m.Middleware(create)
		h2.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 {
			b.Fatal("no session cookie")
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(cookies[0])
		w := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			h.ServeHTTP(w, req)
		}
		if strings.HasPrefix(name, "write") != (len(w.h["Set-Cookie"]) == 1) {
			b.Fatalf("%s: %d Set-Cookie headers", name, len(w.h["Set-Cookie"]))
		}
	})
}

package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps nothing but the headers, so
// the benchmark measures the handlers, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// processCPU is this process's user + system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandler calls each server's handler directly in this process, one
// request at a time, on a real database: no HTTP connection, no load
// generator, no concurrency, hence no collisions and little noise. cpu-µs/op is this
// process's CPU time per request (the database's is not counted), the figure
// the side-by-side HTTP runs spend most of the machine on besides the
// database; compare it across servers of one backend.
//
//	go test -run '^$' -bench Handler -benchtime 2000x ./cmd/sessionbench
func BenchmarkHandler(b *testing.B) {
	for _, name := range backendNames {
		b.Run(name, func(b *testing.B) {
			handlers := map[string]http.Handler{}
			for _, s := range serverChoices {
				handlers[s] = testServer(b, name, s, false)
			}
			for _, wl := range workloadNames {
				b.Run(wl, func(b *testing.B) {
					for _, s := range serverChoices {
						b.Run(s, func(b *testing.B) {
							benchHandler(b, handlers[s], wl)
						})
					}
				})
			}
		})
	}
}

func benchHandler(b *testing.B, h http.Handler, wl string) {
	w := &discardWriter{h: http.Header{}}
	serve := func(path, cookie string) {
		w.reset()
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	// One session to work on.
	serve(pathCounter, "")
	cookie := ""
	for _, c := range w.h["Set-Cookie"] {
		cookie, _, _ = strings.Cut(c, ";")
	}
	if cookie == "" {
		b.Fatal("no session cookie")
	}
	path := pathCounter
	if wl == workloadRead {
		path = pathRead
	}
	if wl == workloadNew {
		cookie = ""
	}
	// Requests are built outside the measured CPU: they are the load
	// generator's work.
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, path, nil)
		if cookie != "" {
			reqs[i].Header.Set("Cookie", cookie)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := range b.N {
		w.reset()
		h.ServeHTTP(w, reqs[i])
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

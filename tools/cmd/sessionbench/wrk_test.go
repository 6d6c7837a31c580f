package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := "Running 1s test @ http://127.0.0.1:1\n" +
		"sessionbench-result requests=120 duration_us=1000500 connect=0 read=1 write=0 timeout=2 status=3 bad=4 p50_us=1500 p99_us=9000\n" +
		"sessionbench-first-bad status 500: boom\n"
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{requests: 120, duration: 1000500 * time.Microsecond, read: 1, timeout: 2, status: 3, bad: 4,
		firstBad: "status 500: boom", p50: 1500 * time.Microsecond, p99: 9 * time.Millisecond}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if r.errors() != 7 || r.firstError() == "" {
		t.Errorf("errors() = %d (%q), want 7 and a description", r.errors(), r.firstError())
	}
	for _, bad := range []string{
		"",
		"sessionbench-result requests=1 duration_us=1\n", // fields missing
		"sessionbench-result requests=1 duration_us=0 connect=0 read=0 write=0 timeout=0 status=0 bad=0 p50_us=1 p99_us=1\n",
		"sessionbench-result requests=x duration_us=1 connect=0 read=0 write=0 timeout=0 status=0 bad=0 p50_us=1 p99_us=1\n",
		"sessionbench-result requests=1 duration_us=1 connect=0 read=0 write=0 timeout=0 status=0 bad=0 p50_us=1 p99_us=1 more=1\n",
	} {
		if r, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk(%q) = %+v, want an error", bad, r)
		}
	}
}

// TestSumWrk: the results of wrk processes run together add up; the
// duration and percentiles are the highest.
func TestSumWrk(t *testing.T) {
	a := wrkResult{requests: 100, duration: time.Second, read: 1, status: 2, bad: 3, p50: 2 * time.Millisecond, p99: 9 * time.Millisecond}
	b := wrkResult{requests: 50, duration: 1010 * time.Millisecond, timeout: 4, bad: 1, firstBad: "status 500", p50: 3 * time.Millisecond, p99: 8 * time.Millisecond}
	want := wrkResult{requests: 150, duration: 1010 * time.Millisecond, read: 1, timeout: 4, status: 2, bad: 4, firstBad: "status 500",
		p50: 3 * time.Millisecond, p99: 9 * time.Millisecond}
	if got := sumWrk([]wrkResult{a, b}); got != want {
		t.Errorf("sumWrk = %+v, want %+v", got, want)
	}
	if got := sumWrk([]wrkResult{a}); got != a {
		t.Errorf("sumWrk of one = %+v, want it unchanged", got)
	}
}

// runTestWrk runs wrk with sessionbench's script for 1 s against h, with
// cookies (if any) in the cookie file.
func runTestWrk(t *testing.T, h http.Handler, workload string, cookies ...string) wrkResult {
	t.Helper()
	return runTestWrkPaused(t, h, workload, 0, cookies...)
}

// runTestWrkPaused is runTestWrk with --pause.
func runTestWrkPaused(t *testing.T, h http.Handler, workload string, pause time.Duration, cookies ...string) wrkResult {
	t.Helper()
	wrk := requireWrk(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	script, err := writeScript(dir, pause)
	if err != nil {
		t.Fatal(err)
	}
	w := wrkRun{wrk: wrk, script: script, url: srv.URL, workload: workload, threads: 1, connections: 2, duration: time.Second}
	if len(cookies) > 0 {
		w.cookies = filepath.Join(dir, "cookies")
		var b []byte
		for _, c := range cookies {
			b = append(b, c+"\n"...)
		}
		if err := os.WriteFile(w.cookies, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := w.run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests == 0 || r.p50 <= 0 {
		t.Fatalf("wrk measured nothing: %+v", r)
	}
	return r
}

// TestWrkSendsSeededCookies: every request carries one of the seeded
// cookies, all of them get used, and good answers are no errors.
func TestWrkSendsSeededCookies(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	r := runTestWrk(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Cookie")]++
		mu.Unlock()
		if r.URL.Path != pathRead {
			http.Error(w, "not the read path", http.StatusNotFound)
			return
		}
		writeCount(w, 1)
	}), workloadRead, "id=a", "id=b", "id=c")
	if r.errors() != 0 {
		t.Errorf("%d errors: %s", r.errors(), r.firstError())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen["id=a"] == 0 || seen["id=b"] == 0 || seen["id=c"] == 0 {
		t.Errorf("cookies sent: %v, want id=a, id=b and id=c only", seen)
	}
}

// TestWrkReportsErrors: a bad status, a body that does not match the
// workload, and a new session without a cookie all count as errors.
func TestWrkReportsErrors(t *testing.T) {
	var n atomic.Int64
	r := runTestWrk(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 1:
			writeCount(w, 1) // a counter below 2: the seeded session was lost
		default:
			writeCount(w, 3)
		}
	}), workloadCounter, "id=a")
	// About a quarter had status 500, half were bad.
	if r.status == 0 || r.bad < r.status || r.bad >= r.requests || r.errors() < r.bad || r.firstError() == "" {
		t.Errorf("counter against a failing server: %+v", r)
	}
	if f := float64(r.bad) / float64(r.requests); f < 0.4 || f > 0.6 {
		t.Errorf("%.2f of the responses counted bad, want about half: %+v", f, r)
	}

	r = runTestWrk(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "" {
			http.Error(w, fmt.Sprintf("cookie %q on a new session", r.Header.Get("Cookie")), http.StatusBadRequest)
			return
		}
		writeCount(w, 1) // and no Set-Cookie
	}), workloadNew)
	if r.bad != r.requests || r.status != 0 {
		t.Errorf("new sessions without a cookie: %+v, want every response bad, none for its status", r)
	}
}

// TestWrkPause: with a pause, each of the 2 connections sends at most one
// request per pause (about 10 in 1 s at 100 ms, against thousands without).
func TestWrkPause(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeCount(w, 1) })
	paused := runTestWrkPaused(t, h, workloadRead, 100*time.Millisecond)
	if paused.errors() != 0 || paused.requests > 2*11 {
		t.Errorf("pause 100 ms, 2 connections, 1 s: %d requests, %d errors; want at most 22 and none", paused.requests, paused.errors())
	}
	full := runTestWrk(t, h, workloadRead)
	if full.requests < 10*paused.requests {
		t.Errorf("without a pause: %d requests, with one %d; want many more without", full.requests, paused.requests)
	}
}

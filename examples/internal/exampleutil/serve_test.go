package exampleutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// startServe runs Serve in a goroutine and returns its base URL and the
// channel its result arrives on.
func startServe(t *testing.T, ctx context.Context, s Server) (string, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	s.Log = pw
	s.Addr = "127.0.0.1:0"
	done := make(chan error, 1)
	go func() {
		err := Serve(ctx, s)
		pw.Close()
		done <- err
	}()
	line := make([]byte, 200)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatalf("no listening line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	u, ok := strings.CutPrefix(strings.TrimSpace(string(line[:n])), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line[:n])
	}
	return u, done
}

func TestServeDrainsAndStopsBackground(t *testing.T) {
	ctx, signal := context.WithCancel(context.Background())
	entered := make(chan struct{})
	release := make(chan struct{})
	var bgStopped atomic.Bool
	url, done := startServe(t, ctx, Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			io.WriteString(w, "finished")
		}),
		Background: []func(context.Context) error{func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // Serve must wait for this
			bgStopped.Store(true)
			return ctx.Err()
		}},
	})

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	signal()

	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second); err == nil {
		t.Error("still accepting connections after the signal")
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q, %v; want it to finish", r.body, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a clean shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the request finished")
	}
	if !bgStopped.Load() {
		t.Error("Serve returned before the background task stopped")
	}
}

func TestServeReportsBackgroundFailure(t *testing.T) {
	ctx, signal := context.WithCancel(context.Background())
	boom := errors.New("boom")
	_, done := startServe(t, ctx, Server{
		Handler:    http.NotFoundHandler(),
		Background: []func(context.Context) error{func(context.Context) error { return boom }},
	})
	signal()
	if err := <-done; !errors.Is(err, boom) {
		t.Errorf("Serve = %v, want the background task's error", err)
	}
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var log bytes.Buffer
	err = Serve(context.Background(), Server{Addr: ln.Addr().String(), Handler: http.NotFoundHandler(), Log: &log})
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Errorf("Serve on a taken port = %v", err)
	}
	if log.Len() != 0 {
		t.Errorf("printed %q before failing to listen", log.String())
	}
}

// shutdownBound is how soon Serve must return after the signal when no
// request is in a handler.
const shutdownBound = time.Second

// holdConn opens a TCP connection to the server at url, sends prefix (maybe
// nothing) and leaves it open until the test ends.
func holdConn(t *testing.T, url, prefix string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if prefix != "" {
		if _, err := io.WriteString(c, prefix); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// accepted returns once the server has accepted every connection dialled
// before: it accepts in order, so a request answered on a new connection
// means the earlier ones are past Accept and in net/http's hands.
func accepted(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(url + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// waitServe waits for Serve's result and returns how long it took from since.
func waitServe(t *testing.T, done <-chan error, since time.Time) time.Duration {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a clean shutdown", err)
		}
		return time.Since(since)
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return within 20 s of the signal")
		return 0
	}
}

// checkClosed checks that the server has closed c (read sees EOF or a
// reset, not a timeout).
func checkClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: connection still open after Serve returned", what)
	}
}

// TestServeShutdownSkipsWaitingConns: connections with no request in a
// handler (one that sent nothing, as a browser's pre-connection, one with
// half a request line, one with half its headers, a keep-alive connection
// half-way through its second request) must not delay shutdown.
// net/http.Server.Shutdown alone waits 5 s for a new connection to look idle.
func TestServeShutdownSkipsWaitingConns(t *testing.T) {
	for _, tc := range []struct{ name, prefix string }{
		{"silent", ""},
		{"half a request line", "GET /cou"},
		{"half the headers", "GET / HTTP/1.1\r\nHost: example\r\nCookie: id=x"},
		{"second request half sent", "GET / HTTP/1.1\r\nHost: example\r\n\r\nGET / HTTP/1.1\r\nHo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, signal := context.WithCancel(context.Background())
			url, done := startServe(t, ctx, Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			})})
			c := holdConn(t, url, tc.prefix)
			accepted(t, url)
			signaled := time.Now()
			signal()
			if took := waitServe(t, done, signaled); took > shutdownBound {
				t.Errorf("Serve returned %s after the signal, want < %s", took.Round(time.Millisecond), shutdownBound)
			}
			checkClosed(t, c, tc.name)
		})
	}
}

// TestServeShutdownFinishesSlowRequest: a request in a handler when the
// signal comes runs to the end, answers 200 and its session change is
// saved; Serve returns right after it, even with a silent connection open.
func TestServeShutdownFinishesSlowRequest(t *testing.T) {
	const slow = 2 * time.Second
	store := core.NewMemoryStore()
	sessions, err := httpadapter.New(store, httpadapter.WithSecure(false))
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 1)
	var finished atomic.Pointer[time.Time] // when the slow handler returned
	ctx, signal := context.WithCancel(context.Background())
	url, done := startServe(t, ctx, Server{Handler: sessions.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			return
		}
		s := httpadapter.FromContext(r.Context())
		if err := s.Insert(r.Context(), "counter", 41); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		entered <- struct{}{}
		time.Sleep(slow)
		if err := s.Insert(r.Context(), "counter", 42); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "slow and done")
		now := time.Now()
		finished.Store(&now)
	}))})

	silent := holdConn(t, url, "")
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(url + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp, string(b), err}
	}()
	<-entered
	accepted(t, url) // the silent connection too
	signaled := time.Now()
	signal()

	took := waitServe(t, done, signaled)
	handled := finished.Load()
	if handled == nil {
		t.Fatal("Serve returned while a request was in a handler")
	}
	if after := took - handled.Sub(signaled); after > shutdownBound {
		t.Errorf("Serve returned %s after the in-flight request finished, want < %s", after.Round(time.Millisecond), shutdownBound)
	}
	r := <-got
	if r.err != nil || r.resp.StatusCode != http.StatusOK || r.body != "slow and done" {
		t.Fatalf("in-flight request: %v %q, %v; want 200 and its body", r.resp, r.body, r.err)
	}
	checkClosed(t, silent, "silent")

	var cookie *http.Cookie
	for _, c := range r.resp.Cookies() {
		if c.Name == "id" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("the in-flight request set no session cookie")
	}
	tok, err := core.ParseToken(cookie.Value)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Load(context.Background(), tok.ID(), time.Now())
	if err != nil || rec == nil {
		t.Fatalf("loading the in-flight request's session: %v, %v", rec, err)
	}
	var n int
	if err := store.Codec().Unmarshal(rec.Data["counter"], &n); err != nil || n != 42 {
		t.Errorf("saved counter = %d (%v), want 42", n, err)
	}
}

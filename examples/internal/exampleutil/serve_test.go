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

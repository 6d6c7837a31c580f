package exampleutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// ShutdownTimeout bounds how long Serve waits for in-flight requests after
// the shutdown signal.
const ShutdownTimeout = 10 * time.Second

// Timeouts of the example servers. net/http has none by default, so a client
// that connects and stays silent, or sends half a request, would hold a
// connection and a goroutine for ever.
const (
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's line and headers: 5 s is ample for a browser, and short
	// enough that silent connections do not pile up.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request, body included; the
	// counter's requests have no body, 30 s leaves room for a form.
	ReadTimeout = 30 * time.Second
	// IdleTimeout bounds how long a keep-alive connection may wait for its
	// next request; browsers reuse theirs within seconds.
	IdleTimeout = 60 * time.Second
)

// Server describes what Serve runs.
type Server struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:3000"; port 0
	// picks a free port (the address printed to Log says which).
	Addr string
	// Handler serves the requests.
	Handler http.Handler
	// Background tasks run beside the server, each in its own goroutine,
	// with a context that is cancelled when shutdown begins; Serve waits for
	// them to return. A task's error, other than the cancellation itself, is
	// returned by Serve after shutdown.
	Background []func(ctx context.Context) error
	// Log receives the "listening on" line; nil means io.Discard.
	Log io.Writer
}

// Serve listens on s.Addr, prints "listening on http://ADDR" to s.Log,
// starts the background tasks and serves until ctx is cancelled (the
// signal). It then shuts down gracefully: it stops accepting connections,
// waits up to ShutdownTimeout for in-flight requests to finish, and stops
// and waits for the background tasks. It returns nil after a clean shutdown
// and an error if the server could not listen or failed while serving.
//
// Shutdown does not wait for connections that have no request in a handler:
// a connection that has sent nothing yet (browsers open spare ones ahead of
// time) or only part of a request's headers is closed at once, where
// http.Server.Shutdown alone would wait 5 s for it to look idle. A request
// whose headers arrived before the signal runs to the end and its session is
// saved.
func Serve(ctx context.Context, s Server) error {
	ln, err := listen(s.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.Addr, err)
	}
	log := s.Log
	if log == nil {
		log = io.Discard
	}
	fmt.Fprintf(log, "listening on http://%s\n", ln.Addr())

	var waiting waitingConns
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		ConnState:         waiting.track,
	}
	// Shutdown runs this once it has marked the server as shutting down and
	// closed the listener: from then on no request still being read reaches
	// a handler (net/http drops it), so closing those connections loses
	// nothing and spares their wait.
	srv.RegisterOnShutdown(waiting.closeAll)

	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		bgErr error
	)
	for _, task := range s.Background {
		wg.Go(func() {
			err := task(bgCtx)
			if err != nil && !(bgCtx.Err() != nil && errors.Is(err, bgCtx.Err())) {
				mu.Lock()
				bgErr = errors.Join(bgErr, err)
				mu.Unlock()
			}
		})
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		// Serve only returns early on a failure.
	}

	// Like the seed: the signal aborts the background tasks at once, while
	// the server drains.
	stopBackground()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if errors.Is(shutdownErr, context.DeadlineExceeded) {
		shutdownErr = fmt.Errorf("requests still running after %s: %w", ShutdownTimeout, shutdownErr)
		_ = srv.Close()
	}
	wg.Wait()

	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	if bgErr != nil {
		return fmt.Errorf("background task: %w", bgErr)
	}
	return nil
}

// waitingConns tracks the connections that are reading their first request
// (http.StateNew): no handler runs on them, and http.Server.Shutdown counts
// them as busy for their first 5 seconds. Connections between requests
// (http.StateIdle) need nothing: Shutdown closes them at once.
type waitingConns struct {
	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
}

// track is the server's ConnState hook. net/http moves a connection to
// StateActive only once a request's headers are read, so a half-sent request
// stays in StateNew.
func (w *waitingConns) track(c net.Conn, state http.ConnState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if state != http.StateNew {
		delete(w.conns, c)
		return
	}
	if w.closing {
		c.Close() // accepted just before the listener closed
		return
	}
	if w.conns == nil {
		w.conns = map[net.Conn]struct{}{}
	}
	w.conns[c] = struct{}{}
}

// closeAll closes every connection still reading its first request, and
// any that arrives later.
func (w *waitingConns) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closing = true
	for c := range w.conns {
		c.Close()
	}
	clear(w.conns)
}

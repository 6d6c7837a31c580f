package exampleutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ShutdownTimeout bounds how long Serve waits for in-flight requests after
// the shutdown signal.
const ShutdownTimeout = 10 * time.Second

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

	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
	}

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

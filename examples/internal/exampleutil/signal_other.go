//go:build !wasip1

package exampleutil

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// notifyShutdown returns a context cancelled on Ctrl-C (SIGINT) or SIGTERM.
func notifyShutdown(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

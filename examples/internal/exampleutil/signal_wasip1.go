//go:build wasip1

package exampleutil

import "context"

// notifyShutdown: a wasip1 module receives no signals (the runtime stops it
// outright), and os/signal's receiving goroutine keeps the runtime from
// polling the network there, which freezes every connection. So no signal
// handling at all.
func notifyShutdown(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(parent)
}

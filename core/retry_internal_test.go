package core

import (
	"context"
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	// The first reload after a conflict is immediate; later ones wait, within
	// a limit that doubles per attempt up to 51.2 ms.
	if d := retryDelay(0); d != 0 {
		t.Errorf("retryDelay(0) = %v, want 0", d)
	}
	for attempt := 1; attempt < 20; attempt++ {
		limit := time.Duration(100<<min(attempt-1, 9)) * time.Microsecond
		for range 100 {
			if d := retryDelay(attempt); d <= 0 || d > limit+time.Microsecond {
				t.Fatalf("retryDelay(%d) = %v, want in (0, %v]", attempt, d, limit+time.Microsecond)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := backoff(ctx, 0); err == nil {
		t.Error("backoff on a cancelled context: nil error")
	}
}

package core

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// DefaultDeleteBatch is how many expired records one DeleteExpired call of
// DeleteExpiredEvery removes at most, so a purge never holds long locks.
const DefaultDeleteBatch = 1000

// CleanupOptions tune DeleteExpiredEvery. The zero value works.
type CleanupOptions struct {
	// Batch bounds the records deleted per statement. Zero:
	// DefaultDeleteBatch.
	Batch int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failed rounds; nil means slog.Default().
	Logger *slog.Logger
}

// DeleteExpiredEvery deletes expired records from store about every period
// until ctx ends, then returns ctx's error. The first round runs after one
// period, not at once; rounds are spread by up to ±10% jitter so that many
// processes do not purge in step; each round deletes batch after batch until
// one comes back short. A failed round is logged and retried sooner, with
// exponential backoff capped at period: the loop never gives up.
func DeleteExpiredEvery(ctx context.Context, store Store, period time.Duration, opts CleanupOptions) error {
	if period <= 0 {
		period = time.Minute
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultDeleteBatch
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	wait := period
	failures := 0
	for {
		t := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		deleted, err := deleteExpiredRound(ctx, store, clock().UTC(), batch)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			wait = min(time.Second<<min(failures-1, 20), period)
			logger.ErrorContext(ctx, "sqlsessions: deleting expired sessions failed; will retry",
				"error", err, "deleted", deleted, "retry_in", wait)
			continue
		}
		failures, wait = 0, period
		if deleted > 0 {
			logger.DebugContext(ctx, "sqlsessions: deleted expired sessions", "deleted", deleted)
		}
	}
}

func deleteExpiredRound(ctx context.Context, store Store, now time.Time, batch int) (int64, error) {
	var total int64
	for {
		n, err := store.DeleteExpired(ctx, now, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
	}
}

func jitter(d time.Duration) time.Duration {
	spread := int64(d) / 10
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread) + time.Duration(rand.Int64N(2*spread+1))
}

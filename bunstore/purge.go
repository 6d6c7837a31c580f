package bunstore

import (
	"context"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// ContinuouslyDeleteExpired deletes expired records about every period until
// ctx ends, then returns ctx's error. Run it in its own goroutine and cancel
// ctx on shutdown. A period that is not positive means one minute.
//
// It is core.DeleteExpiredEvery with this store's batch size
// (WithDeleteBatchSize) and logger (WithLogger): the first round runs after
// one period, not at once; rounds are spread by up to ±10% jitter; each round
// deletes batch after batch until one comes back short; a failed round is
// logged and retried with exponential backoff capped at period, and the loop
// never gives up. The clock is time.Now, in UTC.
func (s *Store) ContinuouslyDeleteExpired(ctx context.Context, period time.Duration) error {
	return core.DeleteExpiredEvery(ctx, s, period, core.CleanupOptions{Batch: s.batch, Logger: s.logger})
}

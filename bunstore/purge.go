package bunstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"strconv"
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
// never gives up. The clock is time.Now, in UTC. On SQLite each round ends
// with a TRUNCATE checkpoint (see DeleteExpired).
func (s *Store) ContinuouslyDeleteExpired(ctx context.Context, period time.Duration) error {
	return core.DeleteExpiredEvery(ctx, s, period, core.CleanupOptions{Batch: s.batch, Logger: s.logger})
}

// truncateBusy bounds how long the checkpoint after a purge round waits for
// the write lock and for readers. Writers wait while it does, so a
// long-running reader would otherwise stall them for the whole busy_timeout.
const truncateBusy = 100 * time.Millisecond

// truncateWAL runs PRAGMA wal_checkpoint(TRUNCATE) after a purge round on
// SQLite: a purge writes much of the write-ahead log, and under continuous
// load SQLite's automatic (PASSIVE) checkpoints never rewind it, so without
// this the -wal file only grows. TRUNCATE copies the log into the database
// and empties the file. It waits at most truncateBusy (less if the
// connection's busy_timeout is shorter); a checkpoint that cannot finish by
// then (another one is running, or a reader holds the old log) changes
// nothing and the next round tries again. On a database not in WAL mode it
// does nothing. Failures are only logged: the rows are deleted already.
func (s *Store) truncateWAL(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	conn, err := s.sqldb.Conn(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "sqlsessions: checkpoint after deleting expired sessions", "error", err)
		return
	}
	defer conn.Close()
	var ms int64
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		s.logger.WarnContext(ctx, "sqlsessions: checkpoint after deleting expired sessions", "error", err)
		return
	}
	short := min(ms, truncateBusy.Milliseconds())
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.FormatInt(short, 10)); err != nil {
		s.logger.WarnContext(ctx, "sqlsessions: checkpoint after deleting expired sessions", "error", err)
		return
	}
	var busy, frames, copied int64
	err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied)
	// Put the connection's own busy_timeout back, even if ctx ended; a
	// connection that cannot have it back leaves the pool.
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA busy_timeout = "+strconv.FormatInt(ms, 10)); rerr != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		err = errors.Join(err, rerr)
	}
	switch {
	case err != nil:
		s.logger.WarnContext(ctx, "sqlsessions: checkpoint after deleting expired sessions", "error", err)
	case busy != 0:
		s.logger.DebugContext(ctx, "sqlsessions: checkpoint after deleting expired sessions was busy; the next round tries again",
			"wal_frames", frames, "checkpointed", copied)
	}
}

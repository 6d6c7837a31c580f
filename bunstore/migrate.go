package bunstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// Migrate creates the schema (PostgreSQL, MySQL), the table and its index on
// expiry_date if they do not exist. It is idempotent and safe to run from
// several processes at once: PostgreSQL serialises it with a transaction-level
// advisory lock, MySQL with GET_LOCK, and SQLite with a write transaction.
// It runs through bun, so the *bun.DB's query hooks see it.
//
// The columns are id (text; on MySQL ascii with binary, case-sensitive
// collation), data (bytea / LONGBLOB / BLOB), expiry_date (timestamptz /
// DATETIME(6) in UTC / INTEGER microseconds since the Unix epoch) and version
// (BIGINT).
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var err error
	for attempt := 0; ; attempt++ {
		switch s.dialect {
		case dialect.PG:
			err = s.migratePG(ctx)
		case dialect.MySQL:
			err = s.migrateMySQL(ctx)
		default:
			err = s.migrateSQLite(ctx)
		}
		if err == nil || attempt >= 4 || !s.retryableMigrateErr(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("bunstore: migrate: %w", err)
	}
	return nil
}

// retryableMigrateErr reports a race that a retry resolves: a concurrent
// CREATE ... IF NOT EXISTS by a process that does not take our lock, or a
// busy SQLite database.
func (s *Store) retryableMigrateErr(err error) bool {
	switch s.dialect {
	case dialect.PG:
		switch sqlState(err) {
		case "23505", "42P06", "42P07", "42710": // unique_violation, duplicate schema/table/object
			return true
		}
	case dialect.SQLite:
		msg := err.Error()
		return strings.Contains(msg, "database is locked") || strings.Contains(msg, "busy")
	}
	return false
}

// lockKey names the migration lock of this table.
func (s *Store) lockKey() uint64 {
	h := fnv.New64a()
	h.Write([]byte("sqlsessions/bunstore migrate " + s.schema + "." + s.table))
	return h.Sum64()
}

func (s *Store) migratePG(ctx context.Context) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", int64(s.lockKey())); err != nil {
			return err
		}
		for _, q := range s.st.migrate {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) migrateMySQL(ctx context.Context) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	name := fmt.Sprintf("sqlsessions_migrate_%016x", s.lockKey())
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
		return err
	}
	if got.Int64 != 1 {
		return fmt.Errorf("timed out waiting for lock %s held by another migration", name)
	}
	defer func() {
		// A fresh context: release the lock even if ctx has ended.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", name); rerr != nil && err == nil {
			err = rerr
		}
	}()
	for _, q := range s.st.migrate {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) migrateSQLite(ctx context.Context) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, q := range s.st.migrate {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

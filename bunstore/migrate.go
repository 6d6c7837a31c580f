package bunstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
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
// DATETIME(6) in UTC / INTEGER microseconds since the Unix epoch), version
// (BIGINT), created_at (like expiry_date, NULL when unknown) and user_key
// (text, NULL for none), with indexes on expiry_date and user_key.
//
// A table made by an earlier release is upgraded in place: the columns and
// indexes it lacks are added, and its rows keep loading and saving. A table
// of another layout (tower-sessions' own table has no version column) makes
// Migrate fail with an error naming the columns it found, rather than
// succeed and break every later query.
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
		// Refuse another library's table before altering it: the error
		// would otherwise list the columns just added (rolled back), and
		// the ALTER would lock out that library's traffic meanwhile.
		cols, err := s.tableColumns(ctx, tx)
		if err != nil {
			return err
		}
		if len(cols) > 0 && !ours(cols) {
			return s.layoutError(cols)
		}
		for _, q := range s.st.migrate {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return s.checkLayout(ctx, tx)
	})
}

// ours reports whether a table with these columns was made by this store,
// in this release or an earlier one, and can be upgraded in place.
func ours(cols map[string]bool) bool {
	return cols["id"] && cols["data"] && cols["expiry_date"] && cols["version"]
}

// tableColumns returns the columns of the store's table.
func (s *Store) tableColumns(ctx context.Context, db bun.IConn) (map[string]bool, error) {
	var (
		rows *sql.Rows
		err  error
	)
	switch s.dialect {
	case dialect.SQLite:
		rows, err = db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", s.table)
	default:
		rows, err = db.QueryContext(ctx, "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", s.schema, s.table)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		cols[strings.ToLower(name)] = true
	}
	return cols, rows.Err()
}

// checkLayout fails unless the table has every column the store uses.
func (s *Store) checkLayout(ctx context.Context, db bun.IConn) error {
	cols, err := s.tableColumns(ctx, db)
	if err != nil {
		return err
	}
	return s.layoutError(cols)
}

func (s *Store) layoutError(cols map[string]bool) error {
	var missing []string
	for _, c := range []string{"id", "data", "expiry_date", "version", "created_at", "user_key"} {
		if !cols[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	found := slices.Sorted(maps.Keys(cols))
	hint := ""
	if !cols["version"] && cols["id"] && cols["data"] && cols["expiry_date"] {
		hint = " (this looks like tower-sessions' own table, whose records sqlsessions cannot read: give the store another table with WithTableName)"
	}
	return fmt.Errorf("%w: table %s has columns (%s) and lacks (%s)%s",
		ErrTableLayout, s.qualifiedName(), strings.Join(found, ", "), strings.Join(missing, ", "), hint)
}

// qualifiedName is the table's name as a message shows it.
func (s *Store) qualifiedName() string {
	if s.schema == "" {
		return s.table
	}
	return s.schema + "." + s.table
}

// addMissingColumns adds created_at and user_key to a table made before
// they existed (MySQL has no ADD COLUMN IF NOT EXISTS, SQLite neither).
// The caller holds the migration lock or a write transaction.
func (s *Store) addMissingColumns(ctx context.Context, db bun.IConn) error {
	cols, err := s.tableColumns(ctx, db)
	if err != nil {
		return err
	}
	if !ours(cols) {
		return s.layoutError(cols) // change nothing
	}
	table := bun.Ident(s.table)
	if s.schema != "" {
		table = bun.Ident(s.schema + "." + s.table)
	}
	if s.dialect == dialect.MySQL {
		return s.addMissingMySQL(ctx, db, table, cols)
	}
	// SQLite: one column per ALTER, in the caller's transaction.
	for _, name := range []string{"created_at", "user_key"} {
		if cols[name] {
			continue
		}
		if _, err := db.ExecContext(ctx, s.st.addColumn[name]); err != nil {
			return err
		}
	}
	return nil
}

// addMissingMySQL adds what the table lacks of created_at, user_key and
// the index on user_key in one ALTER TABLE. MySQL's DDL is not
// transactional: with one ALTER per column, a process stopped between
// them left user_key without its index, and the next Migrate took the
// column as proof of the index.
func (s *Store) addMissingMySQL(ctx context.Context, db bun.IConn, table bun.Ident, cols map[string]bool) error {
	var indexed int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? AND column_name = 'user_key' AND seq_in_index = 1",
		s.schema, s.table).Scan(&indexed); err != nil {
		return err
	}
	var add []string
	for _, name := range []string{"created_at", "user_key"} {
		if !cols[name] {
			add = append(add, "ADD COLUMN "+name+" "+columnDef(dialect.MySQL, name))
		}
	}
	if indexed == 0 {
		add = append(add, "ADD INDEX user_key_idx (user_key)")
	}
	if len(add) == 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, "ALTER TABLE ? "+strings.Join(add, ", "), table)
	return err
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
	if err := s.addMissingColumns(ctx, conn); err != nil {
		return err
	}
	return s.checkLayout(ctx, conn)
}

func (s *Store) migrateSQLite(ctx context.Context) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, s.st.migrate[0]); err != nil {
			return err
		}
		if err := s.addMissingColumns(ctx, tx); err != nil {
			return err
		}
		for _, q := range s.st.migrate[1:] {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return s.checkLayout(ctx, tx)
	})
}

package bunstore

import (
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// statements holds the SQL text of everything the store runs, built once in
// New. Identifiers are quoted by bun; arguments are driver placeholders ($n
// on PostgreSQL, ? elsewhere) bound at execution.
type statements struct {
	create        string // id, data, expiry, created, user -> 1 row or collision
	save          string // data, expiry, user, id, version -> rows affected
	deleteVersion string // id, version -> rows affected
	load          string // id, now -> data, expiry, version, created, user
	delete        string // id
	take          string // id -> data, expiry, version, created, user of the deleted row (PG, SQLite)
	takeSelect    string // id -> the same, locking the row (MySQL, before delete)
	deleteExpired string // now, limit -> rows affected
	userSessions  string // user, now -> id, created, expiry
	deleteUser    string // user, except id -> rows affected
	migrate       []string
}

// columns is what Load and Take read, in the order scanRecord expects.
const columns = "data, expiry_date, version, created_at, user_key"

// format renders query with bun's formatter for db's dialect: "?" in query
// takes the next arg (bun.Ident quoted by the dialect, bun.Safe as is).
func format(db *bun.DB, query string, args ...any) (string, error) {
	b, err := db.NewRaw(query, args...).AppendQuery(db.QueryGen(), nil)
	if err != nil {
		return "", fmt.Errorf("bunstore: building SQL: %w", err)
	}
	return string(b), nil
}

func buildStatements(db *bun.DB, name dialect.Name, schemaName, tableName string) (*statements, error) {
	var table, schemaIdent bun.Ident
	if schemaName != "" {
		table = bun.Ident(schemaName + "." + tableName)
		schemaIdent = bun.Ident(schemaName)
	} else {
		table = bun.Ident(tableName)
	}
	ph := func(n int) bun.Safe {
		if name == dialect.PG {
			return bun.Safe(fmt.Sprintf("$%d", n))
		}
		return bun.Safe("?")
	}
	type q struct {
		dst   *string
		query string
		args  []any
	}
	var st statements
	qs := []q{
		{&st.save, "UPDATE ? SET data = ?, expiry_date = ?, user_key = ?, version = version + 1 WHERE id = ? AND version = ?",
			[]any{table, ph(1), ph(2), ph(3), ph(4), ph(5)}},
		{&st.deleteVersion, "DELETE FROM ? WHERE id = ? AND version = ?", []any{table, ph(1), ph(2)}},
		{&st.load, "SELECT " + columns + " FROM ? WHERE id = ? AND expiry_date > ?", []any{table, ph(1), ph(2)}},
		{&st.delete, "DELETE FROM ? WHERE id = ?", []any{table, ph(1)}},
		{&st.userSessions, "SELECT id, created_at, expiry_date FROM ? WHERE user_key = ? AND expiry_date > ? ORDER BY created_at, id",
			[]any{table, ph(1), ph(2)}},
		{&st.deleteUser, "DELETE FROM ? WHERE user_key = ? AND id <> ?", []any{table, ph(1), ph(2)}},
	}
	insert := "INSERT INTO ? (id, data, expiry_date, version, created_at, user_key) VALUES (?, ?, ?, 1, ?, ?)"
	insertArgs := []any{table, ph(1), ph(2), ph(3), ph(4), ph(5)}
	switch name {
	case dialect.PG:
		idx := bun.Ident(pgIndexName(tableName, "_expiry_date_idx"))
		userIdx := bun.Ident(pgIndexName(tableName, "_user_key_idx"))
		qs = append(qs,
			q{&st.create, insert + " ON CONFLICT (id) DO NOTHING", insertArgs},
			q{&st.take, "DELETE FROM ? WHERE id = ? RETURNING " + columns, []any{table, ph(1)}},
			// SKIP LOCKED: concurrent purgers (one per process) take
			// different rows instead of queueing behind each other. An
			// expiry past core.MaxDeadline (infinity, the year 10000) is
			// not a deadline: such a row is unreadable (Load reports it
			// corrupt), so the purge removes it; both ranges use the index.
			q{&st.deleteExpired, "DELETE FROM ? WHERE id IN (SELECT id FROM ? WHERE expiry_date <= ? OR expiry_date > ? LIMIT ? FOR UPDATE SKIP LOCKED)",
				[]any{table, table, ph(1), bun.Safe("'" + core.MaxDeadline.Format("2006-01-02 15:04:05.999999") + "+00'"), ph(2)}},
		)
		st.migrate = make([]string, 6)
		qs = append(qs,
			q{&st.migrate[0], "CREATE SCHEMA IF NOT EXISTS ?", []any{schemaIdent}},
			// COLLATE "C": ids are ASCII compared byte by byte, so the
			// primary key needs no locale-aware comparison (half the cost
			// of a lookup under an ICU collation).
			q{&st.migrate[1], `CREATE TABLE IF NOT EXISTS ? (id text COLLATE "C" PRIMARY KEY NOT NULL, data bytea NOT NULL, expiry_date timestamptz NOT NULL, version bigint NOT NULL DEFAULT 1, created_at timestamptz, user_key text COLLATE "C")`,
				[]any{table}},
			// Tables made before created_at and user_key existed gain
			// them in place (NULL: unknown, and no user).
			q{&st.migrate[2], "ALTER TABLE ? ADD COLUMN IF NOT EXISTS created_at timestamptz", []any{table}},
			q{&st.migrate[3], `ALTER TABLE ? ADD COLUMN IF NOT EXISTS user_key text COLLATE "C"`, []any{table}},
			q{&st.migrate[4], "CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)", []any{idx, table}},
			q{&st.migrate[5], "CREATE INDEX IF NOT EXISTS ? ON ? (user_key) WHERE user_key IS NOT NULL", []any{userIdx, table}},
		)
	case dialect.MySQL:
		qs = append(qs,
			// A plain INSERT: a duplicate id is error 1062. INSERT IGNORE
			// would also turn other errors into silent truncation.
			q{&st.create, insert, insertArgs},
			q{&st.takeSelect, "SELECT " + columns + " FROM ? WHERE id = ? FOR UPDATE", []any{table, ph(1)}},
			// ORDER BY a unique key makes DELETE ... LIMIT deterministic
			// (safe for statement-based replication); InnoDB's expiry
			// index holds (expiry_date, id), so it is still index order.
			q{&st.deleteExpired, "DELETE FROM ? WHERE expiry_date <= ? ORDER BY expiry_date, id LIMIT ?", []any{table, ph(1), ph(2)}},
		)
		st.migrate = make([]string, 2)
		qs = append(qs,
			q{&st.migrate[0], "CREATE DATABASE IF NOT EXISTS ?", []any{schemaIdent}},
			// MySQL has no CREATE INDEX IF NOT EXISTS: the indexes are
			// part of the table definition (and added to older tables by
			// migrateMySQL). ascii_bin: ids are case-sensitive.
			q{&st.migrate[1], "CREATE TABLE IF NOT EXISTS ? (" +
				"id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, " +
				"data LONGBLOB NOT NULL, " +
				"expiry_date DATETIME(6) NOT NULL, " +
				"version BIGINT NOT NULL DEFAULT 1, " +
				"created_at DATETIME(6) NULL, " +
				"user_key " + mysqlUserKeyType + " NULL, " +
				"INDEX expiry_date_idx (expiry_date), " +
				"INDEX user_key_idx (user_key))",
				[]any{table}},
		)
	case dialect.SQLite:
		qs = append(qs,
			q{&st.create, insert + " ON CONFLICT (id) DO NOTHING", insertArgs},
			q{&st.take, "DELETE FROM ? WHERE id = ? RETURNING " + columns, []any{table, ph(1)}},
			// SQLite sorts numbers before text and text before blobs: an
			// expiry above core.MaxDeadline's microseconds (a huge integer
			// or REAL, text, a blob) or NULL is unreadable (Load reports
			// it corrupt), so the purge removes it too; every range uses
			// the index.
			q{&st.deleteExpired, "DELETE FROM ? WHERE rowid IN (SELECT rowid FROM ? WHERE expiry_date <= ? OR expiry_date > ? OR expiry_date IS NULL LIMIT ?)",
				[]any{table, table, ph(1), bun.Safe(strconv.FormatInt(core.MaxDeadline.UnixMicro(), 10)), ph(2)}},
		)
		st.migrate = make([]string, 3)
		qs = append(qs,
			q{&st.migrate[0], "CREATE TABLE IF NOT EXISTS ? (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expiry_date INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1, created_at INTEGER, user_key TEXT)",
				[]any{table}},
			q{&st.migrate[1], "CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)", []any{bun.Ident(tableName + "_expiry_date_idx"), table}},
			// Run after migrateSQLite has added user_key to older tables.
			q{&st.migrate[2], "CREATE INDEX IF NOT EXISTS ? ON ? (user_key) WHERE user_key IS NOT NULL", []any{bun.Ident(tableName + "_user_key_idx"), table}},
		)
	default:
		return nil, fmt.Errorf("bunstore: unsupported dialect %q: use pgdialect, mysqldialect or sqlitedialect", name)
	}
	for _, x := range qs {
		s, err := format(db, x.query, x.args...)
		if err != nil {
			return nil, err
		}
		*x.dst = s
	}
	return &st, nil
}

// mysqlUserKeyType holds any user key core accepts (up to core.MaxUserLen
// bytes of UTF-8), compared byte by byte. Binary, not a VARCHAR: MySQL and
// MariaDB compare VARCHARs, utf8mb4_bin included, ignoring trailing spaces,
// so revoking user "a" also revoked user "a ".
const mysqlUserKeyType = "VARBINARY(255)"

// pgIndexName names an index of table: PostgreSQL index names share the
// schema's namespace and are cut at 63 bytes, so a long table name gets a
// hash instead of a truncation that two tables could share.
func pgIndexName(table, suffix string) string {
	if len(table)+len(suffix) <= maxNameLen {
		return table + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	return fmt.Sprintf("%s_%08x%s", table[:maxNameLen-len(suffix)-9], h.Sum32(), suffix)
}

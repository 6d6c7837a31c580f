package bunstore

import (
	"fmt"
	"hash/fnv"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// statements holds the SQL text of everything the store runs, built once in
// New. Identifiers are quoted by bun; arguments are driver placeholders ($n
// on PostgreSQL, ? elsewhere) bound at execution.
type statements struct {
	create        string // id, data, expiry -> 1 row or collision
	save          string // data, expiry, id, version -> rows affected
	deleteVersion string // id, version -> rows affected
	load          string // id, now -> data, expiry, version
	delete        string // id
	deleteExpired string // now, limit -> rows affected
	migrate       []string
}

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
		{&st.save, "UPDATE ? SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?",
			[]any{table, ph(1), ph(2), ph(3), ph(4)}},
		{&st.deleteVersion, "DELETE FROM ? WHERE id = ? AND version = ?", []any{table, ph(1), ph(2)}},
		{&st.load, "SELECT data, expiry_date, version FROM ? WHERE id = ? AND expiry_date > ?", []any{table, ph(1), ph(2)}},
		{&st.delete, "DELETE FROM ? WHERE id = ?", []any{table, ph(1)}},
	}
	switch name {
	case dialect.PG:
		idx := bun.Ident(pgIndexName(tableName))
		qs = append(qs,
			q{&st.create, "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING",
				[]any{table, ph(1), ph(2), ph(3)}},
			// SKIP LOCKED: concurrent purgers (one per process) take
			// different rows instead of queueing behind each other.
			q{&st.deleteExpired, "DELETE FROM ? WHERE id IN (SELECT id FROM ? WHERE expiry_date <= ? LIMIT ? FOR UPDATE SKIP LOCKED)",
				[]any{table, table, ph(1), ph(2)}},
		)
		st.migrate = make([]string, 3)
		qs = append(qs,
			q{&st.migrate[0], "CREATE SCHEMA IF NOT EXISTS ?", []any{schemaIdent}},
			// COLLATE "C": ids are ASCII compared byte by byte, so the
			// primary key needs no locale-aware comparison. Under an ICU
			// en-US collation that halves the cost of an id lookup (2.0
			// against 3.6-4.1 µs measured here) and cuts inserts by a third.
			q{&st.migrate[1], `CREATE TABLE IF NOT EXISTS ? (id text COLLATE "C" PRIMARY KEY NOT NULL, data bytea NOT NULL, expiry_date timestamptz NOT NULL, version bigint NOT NULL DEFAULT 1)`,
				[]any{table}},
			q{&st.migrate[2], "CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)", []any{idx, table}},
		)
	case dialect.MySQL:
		qs = append(qs,
			// A plain INSERT: a duplicate id is error 1062. INSERT IGNORE
			// would also turn other errors into silent truncation.
			q{&st.create, "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1)",
				[]any{table, ph(1), ph(2), ph(3)}},
			// ORDER BY a unique key makes DELETE ... LIMIT deterministic
			// (safe for statement-based replication); InnoDB's expiry
			// index holds (expiry_date, id), so it is still index order.
			q{&st.deleteExpired, "DELETE FROM ? WHERE expiry_date <= ? ORDER BY expiry_date, id LIMIT ?", []any{table, ph(1), ph(2)}},
		)
		st.migrate = make([]string, 2)
		qs = append(qs,
			q{&st.migrate[0], "CREATE DATABASE IF NOT EXISTS ?", []any{schemaIdent}},
			// MySQL has no CREATE INDEX IF NOT EXISTS: the index is part of
			// the table definition. ascii_bin: ids are case-sensitive.
			q{&st.migrate[1], "CREATE TABLE IF NOT EXISTS ? (" +
				"id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, " +
				"data LONGBLOB NOT NULL, " +
				"expiry_date DATETIME(6) NOT NULL, " +
				"version BIGINT NOT NULL DEFAULT 1, " +
				"INDEX expiry_date_idx (expiry_date))",
				[]any{table}},
		)
	case dialect.SQLite:
		qs = append(qs,
			q{&st.create, "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING",
				[]any{table, ph(1), ph(2), ph(3)}},
			q{&st.deleteExpired, "DELETE FROM ? WHERE rowid IN (SELECT rowid FROM ? WHERE expiry_date <= ? LIMIT ?)",
				[]any{table, table, ph(1), ph(2)}},
		)
		st.migrate = make([]string, 2)
		qs = append(qs,
			q{&st.migrate[0], "CREATE TABLE IF NOT EXISTS ? (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expiry_date INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1)",
				[]any{table}},
			q{&st.migrate[1], "CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)", []any{bun.Ident(tableName + "_expiry_date_idx"), table}},
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

// pgIndexName names the expiry index: PostgreSQL index names share the
// schema's namespace and are cut at 63 bytes, so a long table name gets a
// hash instead of a truncation that two tables could share.
func pgIndexName(table string) string {
	const suffix = "_expiry_date_idx"
	if len(table)+len(suffix) <= maxNameLen {
		return table + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	return fmt.Sprintf("%s_%08x%s", table[:maxNameLen-len(suffix)-9], h.Sum32(), suffix)
}

package bunstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// statements holds the SQL text of everything the store runs, rendered once
// in New by bun's query builder (see builder). Identifiers are quoted by
// bun; arguments are driver placeholders ($n on PostgreSQL, ? elsewhere)
// bound at execution.
type statements struct {
	create        string // id, data, expiry, created, user -> 1 row or collision
	save          string // data, expiry, user, id, version -> rows affected
	deleteVersion string // id, version -> rows affected
	load          string // id, now -> data, expiry, version, created, user
	delete        string // id
	take          string // id -> data, expiry, version, created, user of the deleted row (PG, SQLite)
	takeSelect    string // id -> the same, locking the row (MySQL, before delete)
	deleteExpired string // now -> rows affected, at most the store's batch size
	userSessions  string // user, now -> id, created, expiry
	deleteUser    string // user, except id -> rows affected

	// migrate creates the schema, table and indexes (see Migrate for the
	// order per dialect).
	migrate []string
	// addColumn adds a column to a table made before it existed, on
	// SQLite (PostgreSQL's migrate does it with IF NOT EXISTS, MySQL's in
	// one ALTER TABLE with columnDef).
	addColumn map[string]string
}

// columns is what Load and Take read, in the order scanRecord expects.
const columns = "data, expiry_date, version, created_at, user_key"

// column is one column of the store's table and its definition.
type column struct{ name, def string }

// tableColumns are each dialect's columns, in table order: the one place
// that says which types a dialect's table has (CREATE TABLE and the
// ALTER TABLE that adds a column to an older table both read it).
var tableColumns = map[dialect.Name][]column{
	// COLLATE "C": ids are ASCII compared byte by byte, so the primary
	// key needs no locale-aware comparison (half the cost of a lookup
	// under an ICU collation).
	dialect.PG: {
		{"id", `text COLLATE "C" PRIMARY KEY NOT NULL`},
		{"data", "bytea NOT NULL"},
		{"expiry_date", "timestamptz NOT NULL"},
		{"version", "bigint NOT NULL DEFAULT 1"},
		{"created_at", "timestamptz"},
		{"user_key", `text COLLATE "C"`},
	},
	// ascii_bin: ids are case-sensitive. DATETIME(6): no 2038 limit,
	// microseconds kept.
	dialect.MySQL: {
		{"id", "VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY"},
		{"data", "LONGBLOB NOT NULL"},
		{"expiry_date", "DATETIME(6) NOT NULL"},
		{"version", "BIGINT NOT NULL DEFAULT 1"},
		{"created_at", "DATETIME(6) NULL"},
		{"user_key", mysqlUserKeyType + " NULL"},
	},
	// INTEGER expiries: unix microseconds, compared as numbers.
	dialect.SQLite: {
		{"id", "TEXT PRIMARY KEY NOT NULL"},
		{"data", "BLOB NOT NULL"},
		{"expiry_date", "INTEGER NOT NULL"},
		{"version", "INTEGER NOT NULL DEFAULT 1"},
		{"created_at", "INTEGER"},
		{"user_key", "TEXT"},
	},
}

// mysqlUserKeyType holds any user key core accepts (up to core.MaxUserLen
// bytes of UTF-8), compared byte by byte. Binary, not a VARCHAR: MySQL and
// MariaDB compare VARCHARs, utf8mb4_bin included, ignoring trailing spaces,
// so revoking user "a" also revoked user "a ".
const mysqlUserKeyType = "VARBINARY(255)"

// columnDef is the definition of d's column name in tableColumns.
func columnDef(d dialect.Name, name string) string {
	for _, col := range tableColumns[d] {
		if col.name == name {
			return col.def
		}
	}
	return ""
}

// tableModel gives bun's DDL builders a model without columns of its own:
// the columns come from tableColumns, the name from ModelTableExpr.
type tableModel struct{ bun.BaseModel }

// builder builds the store's statements for one table with bun's query
// builder. New renders them once (the text the store runs and prepares);
// with WithBunQueryHooks each call builds its statement again and runs it
// on bun's query path, so that the *bun.DB's hooks see it.
type builder struct {
	db        *bun.DB
	dialect   dialect.Name
	table     bun.Ident // schema.table, or table
	schema    bun.Ident // "" on SQLite
	tableName string
	batch     int // rows per purge statement
}

// ph is the n-th (from 1) argument's placeholder.
func (b *builder) ph(n int) bun.Safe {
	if b.dialect == dialect.PG {
		return bun.Safe(fmt.Sprintf("$%d", n))
	}
	return bun.Safe("?")
}

// bunQuery is what every statement's bun query can do: run, scanning a
// returned row into dest if given.
type bunQuery = interface {
	bun.Query
	Exec(ctx context.Context, dest ...any) (sql.Result, error)
}

func (b *builder) create(c bun.IConn) bunQuery {
	q := b.db.NewInsert().Conn(c).Model((*tableModel)(nil)).ModelTableExpr("?", b.table).
		// "NULL": no RETURNING clause (bun adds one for Value columns).
		Returning("NULL")
	for i, col := range []string{"id", "data", "expiry_date"} {
		q = q.Value(col, "?", b.ph(i+1))
	}
	q = q.Value("version", "1").Value("created_at", "?", b.ph(4)).Value("user_key", "?", b.ph(5))
	if b.dialect != dialect.MySQL {
		// 0 rows: a collision. MySQL reports it as error 1062 instead,
		// with a plain INSERT: INSERT IGNORE would also turn other
		// errors into silent truncation.
		q = q.On("CONFLICT (id) DO NOTHING")
	}
	return q
}

func (b *builder) save(c bun.IConn) bunQuery {
	return b.db.NewUpdate().Conn(c).TableExpr("?", b.table).
		Set("data = ?", b.ph(1)).Set("expiry_date = ?", b.ph(2)).Set("user_key = ?", b.ph(3)).
		Set("version = version + 1").
		Where("id = ?", b.ph(4)).Where("version = ?", b.ph(5))
}

func (b *builder) deleteVersion(c bun.IConn) bunQuery {
	return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("id = ?", b.ph(1)).Where("version = ?", b.ph(2))
}

func (b *builder) load(c bun.IConn) bunQuery {
	return b.db.NewSelect().Conn(c).TableExpr("?", b.table).ColumnExpr(columns).
		Where("id = ?", b.ph(1)).Where("expiry_date > ?", b.ph(2))
}

func (b *builder) delete(c bun.IConn) bunQuery {
	return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("id = ?", b.ph(1))
}

// take deletes a row and returns it (PostgreSQL, SQLite).
func (b *builder) take(c bun.IConn) bunQuery {
	return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("id = ?", b.ph(1)).Returning(columns)
}

// takeSelect locks a row and returns it (MySQL, which has no RETURNING).
func (b *builder) takeSelect(c bun.IConn) bunQuery {
	return b.db.NewSelect().Conn(c).TableExpr("?", b.table).ColumnExpr(columns).Where("id = ?", b.ph(1)).For("UPDATE")
}

func (b *builder) userSessions(c bun.IConn) *bun.SelectQuery {
	return b.db.NewSelect().Conn(c).TableExpr("?", b.table).Column("id", "created_at", "expiry_date").
		Where("user_key = ?", b.ph(1)).Where("expiry_date > ?", b.ph(2)).Order("created_at", "id")
}

func (b *builder) deleteUser(c bun.IConn) bunQuery {
	return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("user_key = ?", b.ph(1)).Where("id <> ?", b.ph(2))
}

// deleteExpired removes up to n rows expired at its one argument. bun's
// builder takes a LIMIT as a number, not a placeholder: the store renders
// it with its batch size once, and renders another n when it needs one.
func (b *builder) deleteExpired(c bun.IConn, n int) bunQuery {
	switch b.dialect {
	case dialect.PG:
		// SKIP LOCKED: concurrent purgers (one per process) take
		// different rows instead of queueing behind each other. An
		// expiry past core.MaxDeadline (infinity, the year 10000) is
		// not a deadline: such a row is unreadable (Load reports it
		// corrupt), so the purge removes it; both ranges use the index.
		batch := b.db.NewSelect().TableExpr("?", b.table).Column("id").
			Where("expiry_date <= ? OR expiry_date > ?", b.ph(1), bun.Safe("'"+core.MaxDeadline.Format("2006-01-02 15:04:05.999999")+"+00'")).
			Limit(int64(n)).For("UPDATE SKIP LOCKED")
		return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("id IN (?)", batch)
	case dialect.MySQL:
		// ORDER BY a unique key makes DELETE ... LIMIT deterministic
		// (safe for statement-based replication); InnoDB's expiry
		// index holds (expiry_date, id), so it is still index order.
		return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("expiry_date <= ?", b.ph(1)).
			Order("expiry_date", "id").Limit(int64(n))
	default:
		// SQLite sorts numbers before text and text before blobs: an
		// expiry above core.MaxDeadline's microseconds (a huge integer
		// or REAL, text, a blob) or NULL is unreadable (Load reports
		// it corrupt), so the purge removes it too; every range uses
		// the index.
		batch := b.db.NewSelect().TableExpr("?", b.table).ColumnExpr("rowid").
			Where("expiry_date <= ? OR expiry_date > ? OR expiry_date IS NULL", b.ph(1), bun.Safe(strconv.FormatInt(core.MaxDeadline.UnixMicro(), 10))).
			Limit(int64(n))
		return b.db.NewDelete().Conn(c).TableExpr("?", b.table).Where("rowid IN (?)", batch)
	}
}

// createTable is CREATE TABLE IF NOT EXISTS with the dialect's columns
// and extra definitions.
func (b *builder) createTable(extra ...string) bun.Query {
	q := b.db.NewCreateTable().Model((*tableModel)(nil)).ModelTableExpr("?", b.table).IfNotExists()
	for _, col := range tableColumns[b.dialect] {
		q = q.ColumnExpr("? "+col.def, bun.Ident(col.name))
	}
	for _, e := range extra {
		q = q.ColumnExpr(e)
	}
	return q
}

// addColumn adds the dialect's column name to the table, if it is missing
// when ifNotExists (PostgreSQL).
func (b *builder) addColumn(name string, ifNotExists bool) bun.Query {
	q := b.db.NewAddColumn().Model((*tableModel)(nil)).ModelTableExpr("?", b.table).ColumnExpr("? "+columnDef(b.dialect, name), bun.Ident(name))
	if ifNotExists {
		q = q.IfNotExists()
	}
	return q
}

// createIndex indexes column if no index of that name exists (PostgreSQL,
// SQLite); the user_key index leaves out rows without a user.
func (b *builder) createIndex(name, column string) bun.Query {
	q := b.db.NewCreateIndex().Model((*tableModel)(nil)).ModelTableExpr("?", b.table).Index(name).Column(column).IfNotExists()
	if column == "user_key" {
		q = q.Where("user_key IS NOT NULL")
	}
	return q
}

// ddl is each dialect's schema: what Migrate runs, in order (see
// migratePG, migrateMySQL, migrateSQLite), and what it adds to older
// tables.
func (b *builder) ddl() []bun.Query {
	switch b.dialect {
	case dialect.PG:
		return []bun.Query{
			b.db.NewRaw("CREATE SCHEMA IF NOT EXISTS ?", b.schema),
			b.createTable(),
			// Tables made before created_at and user_key existed gain
			// them in place (NULL: unknown, and no user).
			b.addColumn("created_at", true),
			b.addColumn("user_key", true),
			b.createIndex(pgIndexName(b.tableName, "_expiry_date_idx"), "expiry_date"),
			b.createIndex(pgIndexName(b.tableName, "_user_key_idx"), "user_key"),
		}
	case dialect.MySQL:
		// MySQL has no CREATE INDEX IF NOT EXISTS: the indexes are part
		// of the table definition, and migrateMySQL adds user_key and
		// its index to older tables (addMissingMySQL).
		return []bun.Query{
			b.db.NewRaw("CREATE DATABASE IF NOT EXISTS ?", b.schema),
			b.createTable("INDEX expiry_date_idx (expiry_date)", "INDEX user_key_idx (user_key)"),
		}
	default:
		return []bun.Query{
			b.createTable(),
			b.createIndex(b.tableName+"_expiry_date_idx", "expiry_date"),
			// Run after migrateSQLite has added user_key to older tables.
			b.createIndex(b.tableName+"_user_key_idx", "user_key"),
		}
	}
}

// render returns q's SQL text.
func (b *builder) render(q bun.Query) (string, error) {
	s, err := q.AppendQuery(b.db.QueryGen(), nil)
	if err != nil {
		return "", fmt.Errorf("bunstore: building SQL: %w", err)
	}
	return string(s), nil
}

func buildStatements(b *builder) (*statements, error) {
	st := &statements{addColumn: map[string]string{}}
	type out struct {
		dst *string
		q   bun.Query
	}
	qs := []out{
		{&st.create, b.create(nil)},
		{&st.save, b.save(nil)},
		{&st.deleteVersion, b.deleteVersion(nil)},
		{&st.load, b.load(nil)},
		{&st.delete, b.delete(nil)},
		{&st.userSessions, b.userSessions(nil)},
		{&st.deleteUser, b.deleteUser(nil)},
		{&st.deleteExpired, b.deleteExpired(nil, b.batch)},
	}
	if b.dialect == dialect.MySQL {
		qs = append(qs, out{&st.takeSelect, b.takeSelect(nil)})
	} else {
		qs = append(qs, out{&st.take, b.take(nil)})
	}
	for _, x := range qs {
		s, err := b.render(x.q)
		if err != nil {
			return nil, err
		}
		*x.dst = s
	}
	for _, q := range b.ddl() {
		s, err := b.render(q)
		if err != nil {
			return nil, err
		}
		st.migrate = append(st.migrate, s)
	}
	if b.dialect == dialect.SQLite {
		for _, col := range []string{"created_at", "user_key"} {
			s, err := b.render(b.addColumn(col, false))
			if err != nil {
				return nil, err
			}
			st.addColumn[col] = s
		}
	}
	return st, nil
}

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

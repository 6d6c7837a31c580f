package bunstore

import (
	"log/slog"

	"github.com/sqlsessions/sqlsessions/core"
)

// Option configures a Store; pass options to New.
type Option func(*config)

type config struct {
	schema, table string
	schemaSet     bool
	codec         core.Codec
	logger        *slog.Logger
	bunHooks      bool
	batch         int
	prepare       prepareMode
}

// WithSchemaName sets the schema (PostgreSQL) or database (MySQL) that holds
// the table. Default: "tower_sessions". It must be a plain identifier
// ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes); anything else makes New fail.
// SQLite has no schemas: New fails if this option is given for SQLite.
func WithSchemaName(name string) Option {
	return func(c *config) { c.schema, c.schemaSet = name, true }
}

// WithTableName sets the table name. Default: "session" on PostgreSQL and
// MySQL, "tower_sessions" on SQLite. It must be a plain identifier
// ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes); anything else makes New fail.
func WithTableName(name string) Option {
	return func(c *config) { c.table = name }
}

// WithCodec sets the codec for session values and record blobs. Default:
// MsgPack. Change it only for a new table: rows written with another codec
// fail to decode (and Load reports them as corrupt).
func WithCodec(codec core.Codec) Option {
	return func(c *config) { c.codec = codec }
}

// WithLogger sets the logger ContinuouslyDeleteExpired reports failed rounds
// to. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithBunQueryHooks runs the store's statements on bun's query path, so
// that the query hooks registered on the *bun.DB (db.WithQueryHook: bunotel
// for tracing, bundebug for logging, your own for metrics) see each of them
// once, as they see the application's own queries.
//
// Default: off. The store then runs its statements on the *bun.DB's *sql.DB
// and bun's hooks see none of Create, Save, Load, Take, Delete,
// DeleteExpired and the user-session methods (Migrate always runs through
// bun). On, each call builds its statement with bun's query builder and
// bun runs its hooks around it; the statement still runs with bound
// arguments (bun would inline them into the SQL text) and prepared as
// without the option. Hooks get the QueryEvent of a built query: Query is
// the SQL text with placeholders, IQuery the bun query (its Operation is
// SELECT, INSERT, UPDATE or DELETE), QueryArgs is nil. On MySQL, Take's
// transaction runs through bun too, so hooks also see its BEGIN and
// COMMIT. SQLite's write-ahead-log checkpoint after a purge round is
// maintenance, not a statement on the table, and runs beside bun. Building
// costs a few microseconds and allocations per statement (BENCHMARKS.md,
// "bun's query hooks").
func WithBunQueryHooks() Option {
	return func(c *config) { c.bunHooks = true }
}

// WithPreparedStatements says whether the store prepares its statements
// itself (true) or runs their SQL text with bound arguments, leaving it to
// the driver whether and how to prepare them (false).
//
// Default: false with pgx's database/sql driver (github.com/jackc/pgx
// stdlib, v4 or v5), which in its default exec mode keeps a prepared
// statement per connection by itself, and in the modes PgBouncer's
// transaction pooling needs (default_query_exec_mode=exec or
// simple_protocol in the DSN) prepares none; true with every other driver
// (lib/pq, go-sql-driver/mysql, SQLite drivers), which have no such cache
// and run unprepared statements slower.
//
// Set false behind PgBouncer in transaction pooling mode (before 1.21, or
// without max_prepared_statements) when the store cannot tell that the
// driver is pgx (a driver wrapped for tracing, such as otelsql), or with
// lib/pq, together with binary_parameters=yes in its DSN: a statement the
// store prepared on one server connection is missing on the next.
func WithPreparedStatements(on bool) Option {
	return func(c *config) {
		c.prepare = prepareOff
		if on {
			c.prepare = prepareOn
		}
	}
}

// WithDeleteBatchSize sets how many expired rows one DELETE statement removes
// at most, in DeleteExpired and ContinuouslyDeleteExpired. Default: 1000,
// small enough that a purge never holds locks for long while concurrent
// requests run; raise it to purge a large backlog faster. Values below 1
// make New fail.
func WithDeleteBatchSize(n int) Option {
	return func(c *config) { c.batch = n }
}

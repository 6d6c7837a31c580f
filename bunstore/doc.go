// Package bunstore is a sqlsessions session store (a core.Store) for
// PostgreSQL, MySQL/MariaDB and SQLite, over the application's own
// connection pool wrapped in a *bun.DB (github.com/uptrace/bun). The dialect
// of the *bun.DB (pgdialect, mysqldialect or sqlitedialect) decides the SQL.
//
//	store, err := bunstore.New(db) // options: WithSchemaName, WithTableName, ...
//	if err != nil { ... }
//	defer store.Close()
//	if err := store.Migrate(ctx); err != nil { ... }
//	go store.ContinuouslyDeleteExpired(ctx, time.Hour)
//
// # Storage
//
// One table, by default tower_sessions.session (PostgreSQL, MySQL) or
// tower_sessions (SQLite), with an index on expiry_date:
//
//	            PostgreSQL        MySQL / MariaDB                      SQLite
//	id          text "C" PK       VARCHAR(128) ascii, ascii_bin PK     TEXT PK
//	data        bytea             LONGBLOB                             BLOB
//	expiry_date timestamptz       DATETIME(6), UTC                     INTEGER, µs since the Unix epoch
//	version     bigint            BIGINT                               INTEGER
//
// Ids are case-sensitive everywhere and compared byte by byte (PostgreSQL:
// COLLATE "C", so a lookup never pays for the database's locale; a table
// created before that collation keeps working, and ALTER TABLE ... ALTER
// COLUMN id TYPE text COLLATE "C" converts it). Expiries keep microseconds on every
// dialect (the store truncates to microseconds), have no 2038 limit, and are
// compared with a "now" from the application's clock (passed to Load and
// DeleteExpired), never the database's. The data column holds the record's
// values as one blob written by the store's codec, by default MsgPack: a
// MessagePack map of key to value that any MessagePack tool can print.
//
// # Drivers
//
// The module requires none: the application imports the one it uses, and
// only that one ends up in its go.sum.
// PostgreSQL: github.com/jackc/pgx/v5/stdlib or github.com/lib/pq.
// MySQL/MariaDB: github.com/go-sql-driver/mysql. The store writes and reads
// DATETIME(6) as UTC wall-clock time itself, so its expiries are right
// whatever the DSN's loc and parseTime and the session time_zone; for your
// own queries on the table use parseTime=true&loc=UTC (and
// mysqldialect.WithTimeLocation("UTC") for bun's builder).
// A record must fit the server's max_allowed_packet (MariaDB's default is 16
// MiB, MySQL 8's 64 MiB).
// SQLite: github.com/ncruces/go-sqlite3/driver (no cgo), e.g. through the
// sqlitewasm module; use WAL, synchronous=NORMAL and a busy_timeout. After
// each purge round the store empties the write-ahead log with a TRUNCATE
// checkpoint; under continuous load SQLite's automatic checkpoints do not
// keep it small between rounds (sqlitewasm.Open does), so set a
// journal_size_limit if you open SQLite yourself.
//
// # Performance
//
// Create, Save, Load and Delete each run exactly one statement. Their SQL is
// built once by New with bun's query builder (which quotes the identifiers;
// each dialect's columns and DDL are in one place) and runs with bound
// arguments on the *bun.DB's *sql.DB, prepared once per connection, which
// puts the store within a few percent of hand-written database/sql. With
// pgx's database/sql driver the store leaves preparing to pgx, whose
// default exec mode caches a prepared statement per connection; with every
// other driver it prepares the statements itself (WithPreparedStatements).
// Prepared statements live on pooled connections: call db.SetMaxIdleConns(n)
// with the same n as db.SetMaxOpenConns(n), or database/sql (which keeps 2
// idle connections by default) re-prepares them as connections churn.
//
// Concurrent requests on one session (a page firing several requests at
// once) make saves collide: the second save's version is outdated, and
// core's Session reloads the record and replays its own changes on it (a
// SELECT and an UPDATE more). core.NewCachingStore in front of the store
// answers such a save from memory when the winner was written by this
// process, so the collision costs only the replayed UPDATE; the store keeps
// no cache of its own (measured from a separate process it did not pay:
// BENCHMARKS.md).
//
// # PgBouncer
//
// In transaction pooling mode (before PgBouncer 1.21, or without
// max_prepared_statements) a statement prepared on one server connection is
// missing on the next. With pgx, set default_query_exec_mode=exec (or
// simple_protocol) in the DSN, e.g.
//
//	postgres://user:pass@pgbouncer:6432/app?default_query_exec_mode=exec
//
// and pgx keeps no prepared statement on a server connection. With lib/pq,
// use binary_parameters=yes in the DSN and WithPreparedStatements(false).
// Migrate's advisory lock is transaction-level and taken inside Migrate's
// one transaction, so it works in transaction pooling mode too.
//
// PgBouncer before 1.20 can exit on the cancel requests Go clients send
// when a request's context is cancelled mid-statement (pgbouncer issue 801:
// "FATAL in function disconnect_client(): bad client state: 0"), taking
// every instance behind it down; pgx sends one each time it interrupts a
// statement, whatever its context watcher handler. Use PgBouncer 1.20 or
// later, or keep pgx from sending them with a DialFunc that refuses the
// CancelRequest message: docs/many-instances.md ("PgBouncer") gives the
// code, and TestPgBouncerCancel in internal/bunstoretests pins it.
//
// # Cancelled requests
//
// pgx's database/sql driver closes a connection whose statement a
// context interrupted but does not implement driver.Validator, so
// database/sql puts the closed connection back into the pool, and a
// request that draws three of them in a row fails with "driver: bad
// connection". The store runs a statement that failed so outside a
// transaction again, up to the pool's MaxOpenConns + 1 times while its
// context lasts: such a driver error means the statement was not sent.
// The application's own queries on that pool need a connector that
// implements driver.Validator; RELIABILITY.md ("Requests cancelled on a
// pgx pool") gives one.
//
// # Query hooks
//
// By default these statements run on the *sql.DB, beside bun's query path,
// and the query hooks registered on the *bun.DB (bunotel, bundebug) do not
// see them; Migrate runs through bun and its hooks. WithBunQueryHooks runs
// every statement on bun's query path, so that those hooks see each of them
// once, still with bound arguments; it costs a few microseconds per
// statement (BENCHMARKS.md).
package bunstore

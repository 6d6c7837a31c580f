package bunstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// Default names of the table and its schema.
const (
	// DefaultSchemaName is the schema (PostgreSQL) or database (MySQL)
	// holding the table unless WithSchemaName says otherwise.
	DefaultSchemaName = "tower_sessions"
	// DefaultTableName is the table name on PostgreSQL and MySQL.
	DefaultTableName = "session"
	// DefaultSQLiteTableName is the table name on SQLite, which has no
	// schemas.
	DefaultSQLiteTableName = "tower_sessions"
	// DefaultDeleteBatchSize is how many expired rows one DELETE removes at
	// most unless WithDeleteBatchSize says otherwise.
	DefaultDeleteBatchSize = 1000
)

// Store is a core.Store that keeps sessions in one table of a PostgreSQL,
// MySQL/MariaDB or SQLite database reached through a *bun.DB. It is safe for
// concurrent use. Create it with New, create its table with Migrate, and
// release its prepared statements with Close.
type Store struct {
	db      *bun.DB
	sqldb   *sql.DB
	dialect dialect.Name
	schema  string
	table   string
	codec   core.Codec
	logger  *slog.Logger
	batch   int
	closed  atomic.Bool
	// prepares: the store prepares its statements itself (see
	// WithPreparedStatements); otherwise it runs SQL text with bound
	// arguments and the driver decides.
	prepares bool
	// bunHooks: run statements on bun's query path (WithBunQueryHooks).
	bunHooks bool

	b                                             *builder
	st                                            *statements
	create, save, deleteVersion, load, del, purge statement
	take, takeSelect, userSessions, deleteUser    statement
}

var _ core.UserStore = (*Store)(nil)

var _ core.Store = (*Store)(nil)

// New returns a Store for db, whose dialect (pgdialect, mysqldialect or
// sqlitedialect) decides the SQL. It validates the options and builds every
// statement; it runs no query (call Migrate to create the table).
//
// The store runs its per-request statements on db's *sql.DB, prepared once
// per pooled connection (by pgx's statement cache, or by the store: see
// WithPreparedStatements), so set db.SetMaxIdleConns to the same value as
// db.SetMaxOpenConns: database/sql keeps only 2 idle connections by default
// and the statements are re-prepared every time a connection is replaced.
func New(db *bun.DB, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("bunstore: New: db is nil")
	}
	name := db.Dialect().Name()
	c := config{codec: MsgPack, batch: DefaultDeleteBatchSize}
	switch name {
	case dialect.PG, dialect.MySQL:
		c.schema, c.table = DefaultSchemaName, DefaultTableName
	case dialect.SQLite:
		c.table = DefaultSQLiteTableName
	default:
		return nil, fmt.Errorf("bunstore: unsupported dialect %q: use pgdialect, mysqldialect or sqlitedialect", name)
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if name == dialect.SQLite {
		if c.schemaSet {
			return nil, fmt.Errorf("%w: SQLite has no schemas: drop WithSchemaName(%q) (use another database file, or WithTableName)", ErrInvalidName, c.schema)
		}
	} else if err := validName("schema", c.schema); err != nil {
		return nil, err
	}
	if err := validName("table", c.table); err != nil {
		return nil, err
	}
	if c.codec == nil {
		return nil, errors.New("bunstore: WithCodec: codec is nil")
	}
	if c.batch < 1 {
		return nil, fmt.Errorf("bunstore: WithDeleteBatchSize(%d): the batch size must be at least 1", c.batch)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	b := &builder{db: db, dialect: name, tableName: c.table, batch: c.batch}
	if c.schema != "" {
		b.table, b.schema = bun.Ident(c.schema+"."+c.table), bun.Ident(c.schema)
	} else {
		b.table = bun.Ident(c.table)
	}
	st, err := buildStatements(b)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:      db,
		sqldb:   db.DB,
		dialect: name,
		schema:  c.schema,
		table:   c.table,
		codec:   c.codec,
		logger:  c.logger,
		batch:   c.batch,
		st:      st,

		prepares: c.prepare.decide(db.DB),
		bunHooks: c.bunHooks,
		b:        b,
	}
	for _, x := range []struct {
		st    *statement
		query string
		bun   func(bun.IConn) bunQuery
	}{
		{&s.create, st.create, b.create},
		{&s.save, st.save, b.save},
		{&s.deleteVersion, st.deleteVersion, b.deleteVersion},
		{&s.load, st.load, b.load},
		{&s.del, st.delete, b.delete},
		{&s.purge, st.deleteExpired, func(c bun.IConn) bunQuery { return b.deleteExpired(c, b.batch) }},
		{&s.take, st.take, b.take},
		{&s.takeSelect, st.takeSelect, b.takeSelect},
		{&s.userSessions, st.userSessions, func(c bun.IConn) bunQuery { return b.userSessions(c) }},
		{&s.deleteUser, st.deleteUser, b.deleteUser},
	} {
		x.st.query, x.st.bun = x.query, x.bun
	}
	return s, nil
}

// Codec returns the codec session values are encoded with.
func (s *Store) Codec() core.Codec { return s.codec }

// SchemaName returns the schema (PostgreSQL) or database (MySQL) holding the
// table, or "" on SQLite.
func (s *Store) SchemaName() string { return s.schema }

// TableName returns the table's name, without its schema.
func (s *Store) TableName() string { return s.table }

// Close releases the store's prepared statements. It does not close the
// database. Migrate, Create, Save, Load, Delete and DeleteExpired fail with
// ErrClosed afterwards; Close again is a no-op.
func (s *Store) Close() error {
	s.closed.Store(true)
	var errs []error
	for _, st := range []*statement{&s.create, &s.save, &s.deleteVersion, &s.load, &s.del, &s.purge, &s.take, &s.takeSelect, &s.userSessions, &s.deleteUser} {
		errs = append(errs, st.close())
	}
	return errors.Join(errs...)
}

// Create inserts rec with version 1 in one statement, and sets rec.Version
// to 1. An existing row with the same id, expired or not, is left alone and
// the result is core.ErrCollision.
func (s *Store) Create(ctx context.Context, rec *core.Record) error {
	if rec == nil {
		return errors.New("bunstore: create: nil record")
	}
	data, err := s.codec.EncodeMap(rec.Data)
	if err != nil {
		return fmt.Errorf("bunstore: create: encoding the record: %w", err)
	}
	res, err := s.exec(ctx, nil, &s.create, string(rec.ID), data, s.expiryArg(rec.Expiry), s.createdArg(rec.Created), userArg(rec.User))
	if err != nil {
		if s.dialect == dialect.MySQL && isMySQLDuplicate(err) {
			return core.ErrCollision
		}
		return fmt.Errorf("bunstore: create: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("bunstore: create: %w", err)
	}
	if n == 0 {
		return core.ErrCollision
	}
	rec.Version = 1
	return nil
}

// Save writes rec's data and expiry in one statement if the stored version
// is still rec.Version, and increments rec.Version. A record with empty Data
// is deleted instead, under the same condition. If the row is gone or has
// another version, nothing changes and the result is core.ErrConflict.
func (s *Store) Save(ctx context.Context, rec *core.Record) error {
	if rec == nil {
		return errors.New("bunstore: save: nil record")
	}
	if rec.Version > math.MaxInt64 {
		return core.ErrConflict // no row can have this version
	}
	if rec.Version == math.MaxInt64 && len(rec.Data) > 0 {
		// The next version overflows the column (SQLite would store it as
		// a REAL that no Load reads). core.Session moves such a record to
		// a new id before saving.
		return fmt.Errorf("bunstore: save: record %s is at version %d, the largest the store holds: move it to a new id", rec.ID, rec.Version)
	}
	var res sql.Result
	var err error
	var data []byte
	if len(rec.Data) == 0 {
		res, err = s.exec(ctx, nil, &s.deleteVersion, string(rec.ID), int64(rec.Version))
	} else {
		data, err = s.codec.EncodeMap(rec.Data)
		if err != nil {
			return fmt.Errorf("bunstore: save: encoding the record: %w", err)
		}
		res, err = s.exec(ctx, nil, &s.save, data, s.expiryArg(rec.Expiry), userArg(rec.User), string(rec.ID), int64(rec.Version))
	}
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return fmt.Errorf("bunstore: save: %w", err)
	}
	if n == 0 {
		return core.ErrConflict
	}
	rec.Version++
	return nil
}

// Load returns the record id in one statement, or (nil, nil) if it is
// missing or expired at now. A row that cannot be read whole (undecodable
// data, an expiry or version of the wrong type or out of range) is an error
// wrapping core.ErrCorruptRecord.
func (s *Store) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	// One allocation holds every scan destination and argument.
	r := new(rowScan)
	r.init(s.dialect)
	r.args = [2]any{string(id), s.expiryArg(now)}
	err := s.queryRow(ctx, nil, &s.load, r.args[:], r.dest[:]...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bunstore: load: %w", err)
	}
	rec, err := r.record(s.codec, id)
	if err != nil {
		return nil, fmt.Errorf("bunstore: load %s: %w", id, err)
	}
	return rec, nil
}

// Take deletes the record id and returns it as it was, in one statement
// (DELETE ... RETURNING) on PostgreSQL and SQLite, and in a transaction
// that locks the row first on MySQL, which has no RETURNING. It returns
// (nil, nil) if the record is missing or expired at now.
func (s *Store) Take(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	r := new(rowScan)
	r.init(s.dialect)
	var err error
	if s.dialect == dialect.MySQL {
		err = s.takeMySQL(ctx, id, r)
	} else {
		err = s.queryRow(ctx, nil, &s.take, []any{string(id)}, r.dest[:]...)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bunstore: take: %w", err)
	}
	rec, err := r.record(s.codec, id)
	if err != nil {
		return nil, fmt.Errorf("bunstore: take %s: %w", id, err)
	}
	if rec.Expired(now) {
		return nil, nil
	}
	return rec, nil
}

func (s *Store) takeMySQL(ctx context.Context, id core.ID, r *rowScan) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var (
		tx               *sql.Tx
		commit, rollback func() error
	)
	if s.bunHooks {
		// bun's transaction: its hooks see BEGIN and COMMIT too.
		btx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		tx, commit, rollback = btx.Tx, btx.Commit, btx.Rollback
	} else {
		var err error
		if tx, err = s.sqldb.BeginTx(ctx, nil); err != nil {
			return err
		}
		commit, rollback = tx.Commit, tx.Rollback
	}
	args := []any{string(id)}
	err := s.queryRow(ctx, tx, &s.takeSelect, args, r.dest[:]...)
	if err == nil {
		_, err = s.exec(ctx, tx, &s.del, args...)
	}
	if err != nil {
		_ = rollback()
		return err
	}
	return commit()
}

// rowScan is what Load and Take scan one row into: every column through a
// scanner that records a value of the wrong type or range instead of
// failing the scan, so such a row is reported corrupt, not as a database
// error.
type rowScan struct {
	data    []byte
	expiry  timeScanner
	created timeScanner
	version versionScanner
	user    sql.NullString
	dest    [5]any
	args    [2]any
}

func (r *rowScan) init(d dialect.Name) {
	r.expiry.mysql, r.created.mysql = d == dialect.MySQL, d == dialect.MySQL
	r.created.nullable = true
	r.dest = [5]any{&r.data, &r.expiry, &r.version, &r.created, &r.user}
}

// record decodes the scanned row.
func (r *rowScan) record(codec core.Codec, id core.ID) (*core.Record, error) {
	for _, err := range []error{r.expiry.err, r.version.err, r.created.err} {
		if err != nil {
			return nil, fmt.Errorf("%w: %w", core.ErrCorruptRecord, err)
		}
	}
	m, err := codec.DecodeMap(r.data)
	if err != nil {
		if !errors.Is(err, core.ErrCorruptRecord) {
			err = fmt.Errorf("%w: %w", core.ErrCorruptRecord, err)
		}
		return nil, err
	}
	return &core.Record{ID: id, Data: m, Expiry: r.expiry.t, Version: r.version.v, Created: r.created.t, User: r.user.String}, nil
}

// UserSessions lists the live sessions of user, oldest first, in one
// statement using the user_key index.
func (s *Store) UserSessions(ctx context.Context, user string, now time.Time) ([]core.SessionInfo, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	args := []any{user, s.expiryArg(now)}
	c := &conn{s: s, l: &s.userSessions.lazyStmt, args: args}
	var rows *sql.Rows
	var err error
	if s.bunHooks {
		rows, err = s.b.userSessions(c).Rows(ctx)
	} else {
		rows, err = c.QueryContext(ctx, s.userSessions.query)
	}
	var out []core.SessionInfo
	if err == nil {
		out, err = s.scanInfos(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("bunstore: user sessions: %w", err)
	}
	return out, nil
}

func (s *Store) scanInfos(rows *sql.Rows) ([]core.SessionInfo, error) {
	defer rows.Close()
	var out []core.SessionInfo
	mysql := s.dialect == dialect.MySQL
	for rows.Next() {
		var (
			id       string
			exp, cre = timeScanner{mysql: mysql}, timeScanner{mysql: mysql, nullable: true}
		)
		if err := rows.Scan(&id, &cre, &exp); err != nil {
			return nil, err
		}
		if exp.err != nil || cre.err != nil {
			continue // unreadable: not a session anyone can use
		}
		out = append(out, core.SessionInfo{ID: core.ID(id), Created: cre.t, Expiry: exp.t})
	}
	return out, rows.Err()
}

// DeleteUserSessions deletes the sessions of user except the one whose id
// is except, in one statement using the user_key index.
func (s *Store) DeleteUserSessions(ctx context.Context, user string, except core.ID) (int64, error) {
	res, err := s.exec(ctx, nil, &s.deleteUser, user, string(except))
	if err != nil {
		return 0, fmt.Errorf("bunstore: delete user sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("bunstore: delete user sessions: %w", err)
	}
	return n, nil
}

// Delete removes the record id, if any, in one statement.
func (s *Store) Delete(ctx context.Context, id core.ID) error {
	if _, err := s.exec(ctx, nil, &s.del, string(id)); err != nil {
		return fmt.Errorf("bunstore: delete: %w", err)
	}
	return nil
}

// DeleteExpired removes up to limit records expired at now (limit <= 0: all
// of them), in statements of at most the delete batch size each, and reports
// how many it removed. Each batch commits on its own, so a large purge never
// holds locks for long; concurrent requests keep running between batches.
//
// On SQLite, a call that has deleted every expired record (it ended on a
// short batch, as the last call of a ContinuouslyDeleteExpired round does)
// then empties the write-ahead log with PRAGMA wal_checkpoint(TRUNCATE),
// waiting at most 100 ms for the locks it needs: under continuous load
// SQLite's automatic checkpoints never rewind the log, and a purge writes
// much of it, so the -wal file would otherwise only grow.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	var total int64
	nowArg := s.expiryArg(now)
	for limit <= 0 || total < int64(limit) {
		n := s.batch
		if limit > 0 && int64(limit)-total < int64(n) {
			n = int(int64(limit) - total)
		}
		res, err := s.purgeBatch(ctx, nowArg, n)
		if err != nil {
			return total, fmt.Errorf("bunstore: delete expired: %w", err)
		}
		got, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("bunstore: delete expired: %w", err)
		}
		total += got
		if got < int64(n) {
			// No expired record is left: the round is over.
			if s.dialect == dialect.SQLite {
				s.truncateWAL(ctx)
			}
			break
		}
	}
	return total, nil
}

// purgeBatch deletes up to n rows expired at nowArg in one statement. Its
// LIMIT is part of the SQL text (bun's builder takes a number), so a batch
// smaller than the store's batch size is another statement, rendered when
// needed and run unprepared: only a caller's limit makes one.
func (s *Store) purgeBatch(ctx context.Context, nowArg any, n int) (sql.Result, error) {
	if n == s.batch {
		return s.exec(ctx, nil, &s.purge, nowArg)
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	c := &conn{s: s, l: &s.purge.lazyStmt, args: []any{nowArg}}
	q := s.b.deleteExpired(c, n)
	if s.bunHooks {
		return q.Exec(ctx)
	}
	query, err := s.b.render(q)
	if err != nil {
		return nil, err
	}
	return c.ExecContext(ctx, query)
}

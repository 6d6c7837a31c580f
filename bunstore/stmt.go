package bunstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/uptrace/bun"
)

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("bunstore: store is closed")

// prepareMode is WithPreparedStatements' setting; the zero value lets
// the driver decide.
type prepareMode uint8

const (
	prepareAuto prepareMode = iota
	prepareOn
	prepareOff
)

// decide reports whether the store prepares its statements on db.
func (m prepareMode) decide(db *sql.DB) bool {
	if m == prepareAuto {
		return !cachesStatements(db.Driver())
	}
	return m == prepareOn
}

// cachesStatements reports whether d prepares and caches statements per
// connection by itself: pgx's database/sql driver does, in its default
// exec mode; lib/pq, go-sql-driver/mysql and the SQLite drivers do not.
func cachesStatements(d driver.Driver) bool {
	t := reflect.TypeOf(d)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return false
	}
	switch t.PkgPath() {
	case "github.com/jackc/pgx/v5/stdlib", "github.com/jackc/pgx/v4/stdlib":
		return true
	}
	return false
}

// lazyStmt is a statement prepared on first use. A failed prepare (typically:
// the table does not exist yet because Migrate has not run) is not cached,
// so the next call tries again.
type lazyStmt struct {
	query string
	mu    sync.Mutex
	stmt  atomic.Pointer[sql.Stmt]
}

func (l *lazyStmt) get(ctx context.Context, db *sql.DB, closed *atomic.Bool) (*sql.Stmt, error) {
	if st := l.stmt.Load(); st != nil {
		return st, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if closed.Load() {
		return nil, ErrClosed
	}
	if st := l.stmt.Load(); st != nil {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, l.query)
	if err != nil {
		return nil, err
	}
	l.stmt.Store(st)
	return st, nil
}

func (l *lazyStmt) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.stmt.Swap(nil); st != nil {
		return st.Close()
	}
	return nil
}

// statement is one of the store's statements: its SQL text, prepared on
// first use when the store prepares, and the same statement as a bun query,
// which WithBunQueryHooks runs on bun's query path.
type statement struct {
	lazyStmt
	bun func(bun.IConn) bunQuery
}

// conn runs one statement with the arguments of one store call, on the
// store's *sql.DB or in tx: it is the bun.IConn that bun's query path hands
// the rendered statement to (with WithBunQueryHooks), since bun itself
// would inline the arguments into the SQL text.
type conn struct {
	s    *Store
	tx   *sql.Tx // nil: the pool
	l    *lazyStmt
	args []any
}

var _ bun.IConn = (*conn)(nil)

// stmt returns c.l's prepared statement if the store prepares and query is
// its text (bun may add a comment, bun.WithComment), else nil: run query as
// text.
func (c *conn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if !c.s.prepares || query != c.l.query {
		return nil, nil
	}
	st, err := c.l.get(ctx, c.s.sqldb, &c.s.closed)
	if err != nil || c.tx == nil {
		return st, err
	}
	return c.tx.StmtContext(ctx, st), nil
}

// pool is where query runs as text.
func (c *conn) pool() bun.IConn {
	if c.tx != nil {
		return c.tx
	}
	return c.s.sqldb
}

// ExecContext runs query with c's arguments (bun passes none).
func (c *conn) ExecContext(ctx context.Context, query string, _ ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.ExecContext(ctx, c.args...)
	}
	return c.pool().ExecContext(ctx, query, c.args...)
}

// QueryContext runs query with c's arguments (bun passes none).
func (c *conn) QueryContext(ctx context.Context, query string, _ ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.QueryContext(ctx, c.args...)
	}
	return c.pool().QueryContext(ctx, query, c.args...)
}

// QueryRowContext runs query with c's arguments (bun passes none; its
// query path does not call this). If preparing fails, query runs as text
// and fails there.
func (c *conn) QueryRowContext(ctx context.Context, query string, _ ...any) *sql.Row {
	if st, err := c.stmt(ctx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, c.args...)
	}
	return c.pool().QueryRowContext(ctx, query, c.args...)
}

// exec runs st with args, in tx unless it is nil (see WithBunQueryHooks
// and WithPreparedStatements for how).
func (s *Store) exec(ctx context.Context, tx *sql.Tx, st *statement, args ...any) (sql.Result, error) {
	for try := 1; ; try++ {
		res, err := s.execOnce(ctx, tx, st, args...)
		if !s.again(ctx, tx, err, try) {
			return res, err
		}
	}
}

// queryRow runs st, a single-row query, with args and scans its row into
// dest; no row is sql.ErrNoRows.
func (s *Store) queryRow(ctx context.Context, tx *sql.Tx, st *statement, args []any, dest ...any) error {
	for try := 1; ; try++ {
		err := s.queryRowOnce(ctx, tx, st, args, dest...)
		if !s.again(ctx, tx, err, try) {
			return err
		}
	}
}

// again reports whether a statement run outside a transaction that failed
// with driver.ErrBadConn runs again. database/sql returns that error when
// three connections in a row from the pool were bad, and retries on it
// itself: a driver should return it only for a statement it did not send
// (lib/pq does not always: RELIABILITY.md, "Not covered"), so one more
// run risks nothing database/sql does not. pgx's database/sql driver
// (v5.12) closes a connection whose statement its context interrupted and
// does not implement driver.Validator, so database/sql puts it back into
// the pool; after a few requests cancelled mid-statement, a request that
// nobody cancelled could fail with "driver: bad connection"
// (TestDeadConnectionsInPool). Each failed try has taken bad connections
// out of the pool, so pool size plus one tries are enough; a database that
// is down fails them with a connection error, not ErrBadConn, and ends the
// loop at once.
func (s *Store) again(ctx context.Context, tx *sql.Tx, err error, try int) bool {
	if err == nil || tx != nil || !errors.Is(err, driver.ErrBadConn) || ctx.Err() != nil {
		return false
	}
	return try <= max(s.sqldb.Stats().MaxOpenConnections, 1)
}

func (s *Store) execOnce(ctx context.Context, tx *sql.Tx, st *statement, args ...any) (sql.Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	c := &conn{s: s, tx: tx, l: &st.lazyStmt, args: args}
	if s.bunHooks {
		return st.bun(c).Exec(ctx)
	}
	return c.ExecContext(ctx, st.query)
}

func (s *Store) queryRowOnce(ctx context.Context, tx *sql.Tx, st *statement, args []any, dest ...any) error {
	if s.closed.Load() {
		return ErrClosed
	}
	c := &conn{s: s, tx: tx, l: &st.lazyStmt, args: args}
	if s.bunHooks {
		_, err := st.bun(c).Exec(ctx, dest...)
		return err
	}
	prepared, err := c.stmt(ctx, st.query)
	if err != nil {
		return err
	}
	if prepared != nil {
		return prepared.QueryRowContext(ctx, args...).Scan(dest...)
	}
	return c.pool().QueryRowContext(ctx, st.query, args...).Scan(dest...)
}

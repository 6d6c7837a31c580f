package bunstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

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

// before runs the WithQueryHook hooks, if any, for one statement.
func (s *Store) before(ctx context.Context, query string, args []any) (context.Context, *bun.QueryEvent) {
	if len(s.hooks) == 0 {
		return ctx, nil
	}
	ev := &bun.QueryEvent{
		DB:            s.db,
		Query:         query,
		QueryTemplate: query,
		QueryArgs:     args,
		StartTime:     time.Now(),
	}
	for _, h := range s.hooks {
		ctx = h.BeforeQuery(ctx, ev)
	}
	return ctx, ev
}

func (s *Store) after(ctx context.Context, ev *bun.QueryEvent, res sql.Result, err error) {
	if ev == nil {
		return
	}
	ev.Result, ev.Err = res, err
	for i := len(s.hooks) - 1; i >= 0; i-- {
		s.hooks[i].AfterQuery(ctx, ev)
	}
}

// exec runs one statement: prepared by the store, or as SQL text with
// bound arguments (see WithPreparedStatements).
func (s *Store) exec(ctx context.Context, l *lazyStmt, args ...any) (sql.Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	ctx, ev := s.before(ctx, l.query, args)
	var res sql.Result
	var err error
	if !s.prepares {
		res, err = s.sqldb.ExecContext(ctx, l.query, args...)
	} else {
		var st *sql.Stmt
		if st, err = l.get(ctx, s.sqldb, &s.closed); err == nil {
			res, err = st.ExecContext(ctx, args...)
		}
	}
	s.after(ctx, ev, res, err)
	return res, err
}

// query runs one statement returning rows, as exec does.
func (s *Store) query(ctx context.Context, l *lazyStmt, args []any) (*sql.Rows, error) {
	if !s.prepares {
		return s.sqldb.QueryContext(ctx, l.query, args...)
	}
	st, err := l.get(ctx, s.sqldb, &s.closed)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRow runs one single-row query, as exec does, and scans it into dest.
func (s *Store) queryRow(ctx context.Context, l *lazyStmt, args []any, dest ...any) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, ev := s.before(ctx, l.query, args)
	var err error
	if !s.prepares {
		err = s.sqldb.QueryRowContext(ctx, l.query, args...).Scan(dest...)
	} else {
		var st *sql.Stmt
		if st, err = l.get(ctx, s.sqldb, &s.closed); err == nil {
			err = st.QueryRowContext(ctx, args...).Scan(dest...)
		}
	}
	s.after(ctx, ev, nil, err)
	return err
}

package bunstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("bunstore: store is closed")

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

// exec runs one prepared statement.
func (s *Store) exec(ctx context.Context, l *lazyStmt, args ...any) (sql.Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	ctx, ev := s.before(ctx, l.query, args)
	st, err := l.get(ctx, s.sqldb, &s.closed)
	var res sql.Result
	if err == nil {
		res, err = st.ExecContext(ctx, args...)
	}
	s.after(ctx, ev, res, err)
	return res, err
}

// queryRow runs one prepared single-row query and scans it into dest.
func (s *Store) queryRow(ctx context.Context, l *lazyStmt, args []any, dest ...any) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, ev := s.before(ctx, l.query, args)
	st, err := l.get(ctx, s.sqldb, &s.closed)
	if err == nil {
		err = st.QueryRowContext(ctx, args...).Scan(dest...)
	}
	s.after(ctx, ev, nil, err)
	return err
}

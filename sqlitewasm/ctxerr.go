package sqlitewasm

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/ncruces/go-sqlite3"
	sqlite3driver "github.com/ncruces/go-sqlite3/driver"
)

// The ncruces driver stops a statement when its context ends, but reports
// SQLite's code rather than the context's error: SQLITE_BUSY ("database is
// locked") when the context ended while the statement waited for a lock (its
// busy handler gives up at once), SQLITE_INTERRUPT ("interrupted") when it
// ended before or while the statement ran. So a cancelled request looked
// like a database locked for the whole busy_timeout, and bunstore broke its
// promise that a call whose context ends returns an error wrapping the
// context's error. The wrappers below add the context's error to those two
// errors and keep SQLite's. They retry nothing: an interrupted write may have
// committed (SQLite calls the progress handler once more after the commit).

// driverConn is what the wrappers need of the driver's connection.
type driverConn interface {
	sqlite3driver.Conn
	driver.ExecerContext
	driver.NamedValueChecker
}

// driverStmt is what the wrappers need of the driver's statement.
type driverStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
	driver.NamedValueChecker
}

// driverRows is what the wrappers need of the driver's rows.
type driverRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypeScanType
}

// ctxErr returns err, wrapping ctx's error as well if ctx has ended and err
// is how the driver reports that (BUSY or INTERRUPT).
func ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if cerr == nil || errors.Is(err, cerr) ||
		!errors.Is(err, sqlite3.BUSY) && !errors.Is(err, sqlite3.INTERRUPT) {
		return err
	}
	return fmt.Errorf("%w (%w)", cerr, err)
}

// conn is the driver's connection with ctxErr applied to the errors of calls
// that take a context. It is still a sqlite3driver.Conn (Raw gives the
// *sqlite3.Conn), so sql.Conn.Raw works as with the plain driver.
type conn struct {
	driverConn
}

// wrapConn wraps c, unless the driver's connection lacks a method the
// wrappers rely on (another driver version): then it is used as it is.
func wrapConn(c driver.Conn) driver.Conn {
	if dc, ok := c.(driverConn); ok {
		return &conn{dc}
	}
	return c
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.driverConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if ds, ok := s.(driverStmt); ok {
		return &stmt{ds}, nil
	}
	return s, nil
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.driverConn.BeginTx(ctx, opts)
	return tx, ctxErr(ctx, err)
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.driverConn.ExecContext(ctx, query, args)
	if err == driver.ErrSkip {
		return nil, err
	}
	return res, ctxErr(ctx, err)
}

// stmt is the driver's statement with ctxErr applied.
type stmt struct {
	driverStmt
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	res, err := s.driverStmt.ExecContext(ctx, args)
	return res, ctxErr(ctx, err)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	r, err := s.driverStmt.QueryContext(ctx, args)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if dr, ok := r.(driverRows); ok {
		return &rows{dr, ctx}, nil
	}
	return r, nil
}

// rows is the driver's rows with ctxErr applied; the driver steps the
// statement in Next, with the query's context.
type rows struct {
	driverRows
	ctx context.Context
}

func (r *rows) Next(dest []driver.Value) error {
	err := r.driverRows.Next(dest)
	if err == io.EOF {
		return err
	}
	return ctxErr(r.ctx, err)
}

package dbtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync/atomic"
)

// Counter counts the statements a pool sends to the database, at the
// database/sql driver level: every Exec and Query, on a connection or on a
// prepared statement (preparing one is not counted). It sees everything,
// whatever issued it: bun's query path, prepared statements, raw
// database/sql. It counts the statements prepared through database/sql
// apart (Prepares).
type Counter struct{ n, prepares atomic.Int64 }

// Load returns the number of statements counted so far.
func (c *Counter) Load() int64 { return c.n.Load() }

// Prepares returns the number of statements prepared through database/sql
// (sql.DB.Prepare, on each connection that runs one) so far. A driver's own
// statement cache (pgx's) prepares below database/sql and is not counted.
func (c *Counter) Prepares() int64 { return c.prepares.Load() }

// Reset sets the count to zero and returns what it was.
func (c *Counter) Reset() int64 { return c.n.Swap(0) }

// countingDB opens dsn with driverName's driver through a connector that
// counts statements into c.
func countingDB(driverName, dsn string, c *Counter) (*sql.DB, error) {
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	probe.Close()
	var inner driver.Connector
	if dc, ok := drv.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	} else {
		inner = dsnConnector{drv, dsn}
	}
	return sql.OpenDB(countConnector{inner, c}), nil
}

type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

type countConnector struct {
	inner driver.Connector
	c     *Counter
}

func (cc countConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countConn{conn, cc.c}, nil
}

func (cc countConnector) Driver() driver.Driver { return cc.inner.Driver() }

type countConn struct {
	driver.Conn
	c *Counter
}

func (k *countConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if p, ok := k.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = k.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	k.c.prepares.Add(1)
	return &countStmt{st, k.c}, nil
}

func (k *countConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := k.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		k.c.n.Add(1)
	}
	return res, err
}

func (k *countConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := k.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		k.c.n.Add(1)
	}
	return rows, err
}

func (k *countConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := k.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	//lint:ignore SA1019 fallback for drivers without BeginTx
	return k.Conn.Begin()
}

func (k *countConn) ResetSession(ctx context.Context) error {
	if r, ok := k.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (k *countConn) IsValid() bool {
	if v, ok := k.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (k *countConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := k.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type countStmt struct {
	driver.Stmt
	c *Counter
}

func (s *countStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.n.Add(1)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	//lint:ignore SA1019 fallback for drivers without ExecContext
	return s.Stmt.Exec(values(args))
}

func (s *countStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.n.Add(1)
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	//lint:ignore SA1019 fallback for drivers without QueryContext
	return s.Stmt.Query(values(args))
}

func (s *countStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func values(args []driver.NamedValue) []driver.Value {
	v := make([]driver.Value, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/sqlsessions/sqlsessions/internal/pgbouncer"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/uptrace/bun"
)

// backend is one database prepared for a run: a fresh schema (MariaDB
// database, SQLite file) holding the three servers' tables, and a small pool
// of the parent's own for tidying between rounds. The servers run in child
// processes with pools of their own.
type backend struct {
	name   string
	schema string  // what serverConfig.schema names
	db     *sql.DB // the parent's pool: tidy and settle run on it
	// tidy runs before each workload, settle before each measured round
	// (see tablesOf).
	tidy, settle []string
	closers      []func() error // run in reverse order by close
	// pooler is the PgBouncer the server processes' pools go through
	// (--pgbouncer), or nil.
	pooler *pgbouncer.Process
}

// poolURL is the URL the server processes' pools open: PgBouncer's, or ""
// for the database's own (SQLSESSIONS_POSTGRES_URL).
func (b *backend) poolURL() string {
	if b.pooler == nil {
		return ""
	}
	return b.pooler.URL
}

// startPgBouncer starts a PgBouncer in transaction mode with
// default_pool_size poolSize in front of the PostgreSQL server, for the
// server processes' pools, with pgx's default_query_exec_mode=exec in its
// URL (docs/many-instances.md); close stops it.
func (b *backend) startPgBouncer(poolSize int) error {
	u, err := withQuery(dburl.PostgresURLFromEnv(), "default_query_exec_mode", "exec")
	if err != nil {
		return err
	}
	p, err := pgbouncer.Start(u, pgbouncer.Config{DefaultPoolSize: poolSize, MaxClientConn: max(pgbouncer.DefaultMaxClientConn, 2*poolSize)})
	if err != nil {
		return err
	}
	b.pooler = p
	b.closers = append(b.closers, func() error { p.Stop(); return nil })
	return nil
}

// poolerGone returns an error, with PgBouncer's log, if the PgBouncer the
// servers go through has ended.
func (b *backend) poolerGone() error {
	if b.pooler == nil {
		return nil
	}
	if gone, err := b.pooler.Exited(); gone {
		return fmt.Errorf("PgBouncer ended (%v); its log:\n%s", err, b.pooler.Log())
	}
	return nil
}

// withQuery returns the URL rawURL with the query parameter key set to
// value.
func withQuery(rawURL, key, value string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dburl.EnvPostgres, err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// installTriggers installs pgnotify's triggers on sqlsessions' table, once
// for the run, as an application's deployment does: the server processes'
// listeners skip installing. They go with the schema at the end.
func (b *backend) installTriggers(ctx context.Context, deletesOnly bool) error {
	conn, err := pgx.Connect(ctx, dburl.PostgresURLFromEnv())
	if err != nil {
		return fmt.Errorf("pgnotify: %w", err)
	}
	defer conn.Close(context.Background())
	if deletesOnly {
		return pgnotify.InstallDeletes(ctx, conn, b.schema, bunstore.DefaultTableName)
	}
	return pgnotify.Install(ctx, conn, b.schema, bunstore.DefaultTableName)
}

// checkConnections fails when the server processes of one round may need
// more PostgreSQL connections than it allows: each instance's pool and
// listener, and the parent's pool.
func (b *backend) checkConnections(ctx context.Context, cfg config) error {
	var avail int
	q := "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
	if err := b.db.QueryRowContext(ctx, q).Scan(&avail); err != nil {
		return fmt.Errorf("reading max_connections: %w", err)
	}
	need := cfg.instances*cfg.pool + parentPool
	if cfg.pgnotify {
		need += cfg.instances
	}
	if need > avail {
		return fmt.Errorf("%d instances x pool %d (plus listeners and sessionbench's own %d) need %d connections; PostgreSQL allows %d (max_connections - superuser_reserved_connections): lower --pool or --instances",
			cfg.instances, cfg.pool, parentPool, need, avail)
	}
	return nil
}

func (b *backend) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// parentPool is the size of sessionbench's own pool on a database.
const parentPool = 2

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("sessionbench_%x", b)
}

// newBackend creates a fresh schema (database, file under tempDir) for name
// with the three servers' tables: sqlsessions' (bunstore's Migrate), scs's
// (the DDL its store documents, plus the expiry index) and the floor's (with
// floorRow, the columns of a session's row). close drops everything.
func newBackend(ctx context.Context, name, tempDir string, floorRow bool) (_ *backend, err error) {
	b := &backend{name: name, schema: randomName()}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
		}
	}()
	ts, err := tablesOf(name, b.schema)
	if err != nil {
		return nil, err
	}
	b.tidy, b.settle = ts.tidy, ts.settle
	var db *bun.DB
	switch name {
	case "postgres":
		// Statements name the schema: one pool serves both.
		if db, err = openDB(ctx, name, "", "", parentPool); err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA "`+b.schema+`"`); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		b.closers = append(b.closers, func() error {
			_, err := db.ExecContext(context.Background(), `DROP SCHEMA "`+b.schema+`" CASCADE`)
			return err
		})
	case "mysql":
		admin, err := openDB(ctx, name, "", "", 1)
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, admin.Close)
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+b.schema+"`"); err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		b.closers = append(b.closers, func() error {
			_, err := admin.ExecContext(context.Background(), "DROP DATABASE `"+b.schema+"`")
			return err
		})
		if db, err = openDB(ctx, name, b.schema, "", parentPool); err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
	case "sqlite":
		dir, err := os.MkdirTemp(tempDir, "sessionbench-")
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, func() error { return os.RemoveAll(dir) })
		b.schema = filepath.Join(dir, "sessions.db")
		if db, err = openDB(ctx, name, b.schema, "", parentPool); err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
	}
	b.db = db.DB

	var opts []bunstore.Option
	if ts.oursSchema {
		opts = append(opts, bunstore.WithSchemaName(b.schema))
	}
	// sqlsessions' table, and handmade's of the same shape.
	for _, table := range []string{"", handmadeTable} {
		o := opts
		if table != "" {
			o = append(slices.Clip(opts), bunstore.WithTableName(table))
		}
		store, err := bunstore.New(db, o...)
		if err != nil {
			return nil, err
		}
		err = store.Migrate(ctx)
		if err = errors.Join(err, store.Close()); err != nil {
			return nil, fmt.Errorf("%s: migrate: %w", name, err)
		}
	}
	cols := ""
	if floorRow {
		cols = ts.floorCols
	}
	for _, q := range ts.ddl {
		if strings.Contains(q, "%s") {
			q = fmt.Sprintf(q, cols)
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return b, nil
}

// runOrDrop executes statements on the backend's pool and returns them. If
// one fails (say, a user without the right to CHECKPOINT) it says so on log
// and returns nil, so the run goes on without them.
func (b *backend) runOrDrop(ctx context.Context, statements []string, log io.Writer) []string {
	for _, q := range statements {
		if _, err := b.db.ExecContext(ctx, q); err != nil {
			fmt.Fprintf(log, "%s: warning: %s: %v; going on without it\n", b.name, q, err)
			return nil
		}
	}
	return statements
}

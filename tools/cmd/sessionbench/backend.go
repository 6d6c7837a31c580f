package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sqlsessions/sqlsessions/bunstore"
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
}

func (b *backend) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

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
		if db, err = openDB(ctx, name, "", 2); err != nil {
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
		admin, err := openDB(ctx, name, "", 1)
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
		if db, err = openDB(ctx, name, b.schema, 2); err != nil {
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
		if db, err = openDB(ctx, name, b.schema, 2); err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
	}
	b.db = db.DB

	var opts []bunstore.Option
	if ts.oursSchema {
		opts = append(opts, bunstore.WithSchemaName(b.schema))
	}
	store, err := bunstore.New(db, opts...)
	if err != nil {
		return nil, err
	}
	err = store.Migrate(ctx)
	if err = errors.Join(err, store.Close()); err != nil {
		return nil, fmt.Errorf("%s: migrate: %w", name, err)
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

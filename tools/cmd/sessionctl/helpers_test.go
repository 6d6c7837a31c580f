package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
)

// result is what one run of the command produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command in-process with args and the given environment.
func runCLI(t *testing.T, environ map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return environ[k] })
	return result{code, out.String(), errb.String()}
}

// backend is a database the command is tested against: a fresh, empty
// schema (or SQLite file) each time.
type backend struct {
	name string
	// args selects the database and schema on the command line.
	args []string
	// db is the test's own connection to the same database.
	db *bun.DB
	// opts give a bunstore.Store on db the same table as args.
	opts []bunstore.Option
}

type backendOpener struct {
	name string
	open func(t *testing.T) backend
}

// backends lists PostgreSQL and MariaDB (skipped when unreachable, unless CI
// is set) and SQLite.
func backends() []backendOpener {
	return []backendOpener{
		{"postgres", func(t *testing.T) backend {
			db := dbtest.OpenPostgres(t)
			schema := dbtest.UniqueSchema(t, db)
			return backend{
				name: "postgres",
				args: []string{"--database-url", dbtest.PostgresURL(), "--schema", schema},
				db:   db,
				opts: []bunstore.Option{bunstore.WithSchemaName(schema)},
			}
		}},
		{"mysql", func(t *testing.T) backend {
			db := dbtest.OpenMySQL(t)
			schema := dbtest.UniqueSchema(t, db)
			return backend{
				name: "mysql",
				args: []string{"--database-url", mysqlURL(t), "--schema", schema},
				db:   db,
				opts: []bunstore.Option{bunstore.WithSchemaName(schema)},
			}
		}},
		{"sqlite", func(t *testing.T) backend {
			path := filepath.Join(t.TempDir(), "sessions.db")
			db, err := sqlitewasm.Open(path)
			if err != nil {
				t.Fatalf("opening SQLite: %v", err)
			}
			t.Cleanup(func() { db.Close() })
			return backend{
				name: "sqlite",
				args: []string{"--database-url", "sqlite://" + path},
				db:   db,
			}
		}},
	}
}

// mysqlURL is the MySQL test server (dbtest.MySQLDSN) as the
// mysql://user:pass@host:port/db URL an operator would give sessionctl.
func mysqlURL(t *testing.T) string {
	t.Helper()
	u, err := dburl.MySQLURLFromDSN(dbtest.MySQLDSN(t))
	if err != nil {
		t.Fatalf("%s: %v", dburl.EnvMySQL, err)
	}
	return u
}

// forEachBackend runs f against every backend, after running
// `sessionctl migrate` on its fresh schema.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend, s *bunstore.Store)) {
	for _, bo := range backends() {
		t.Run(bo.name, func(t *testing.T) {
			b := bo.open(t)
			r := runCLI(t, nil, append([]string{"migrate"}, b.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("migrate: exit %d, stderr %q", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "is ready") {
				t.Fatalf("migrate: stdout %q", r.stdout)
			}
			s, err := bunstore.New(b.db, b.opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			f(t, b, s)
		})
	}
}

// newSession creates a session holding values through core, as an
// application would, and returns its token.
func newSession(t *testing.T, s core.Store, expiry core.Expiry, values map[string]any) core.Token {
	t.Helper()
	ctx := context.Background()
	sess := core.NewSession(s, "", &core.Options{Expiry: expiry})
	for k, v := range values {
		if err := sess.Insert(ctx, k, v); err != nil {
			t.Fatalf("insert %q: %v", k, err)
		}
	}
	res, err := sess.Commit(ctx)
	if err != nil || res != core.Saved {
		t.Fatalf("commit: %v, %v", res, err)
	}
	return sess.Token()
}

// createRecord stores a record with the given expiry directly, e.g. an
// expired one, and returns its token.
func createRecord(t *testing.T, s core.Store, expiry time.Time, values map[string]any) (core.Token, *core.Record) {
	t.Helper()
	tok, err := core.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &core.Record{ID: tok.ID(), Data: map[string][]byte{}, Expiry: expiry}
	for k, v := range values {
		b, err := s.Codec().Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rec.Data[k] = b
	}
	if err := s.Create(context.Background(), rec); err != nil {
		t.Fatalf("create: %v", err)
	}
	return tok, rec
}

func loaded(t *testing.T, s core.Store, id core.ID) bool {
	t.Helper()
	rec, err := s.Load(context.Background(), id, time.Now())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return rec != nil
}

// checkNoSecret fails if the token appears in the command's output.
func checkNoSecret(t *testing.T, r result, tokens ...core.Token) {
	t.Helper()
	for _, tok := range tokens {
		if s := tok.String(); s != "" && (strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s)) {
			t.Errorf("output shows a token:\nstdout %q\nstderr %q", r.stdout, r.stderr)
		}
	}
}

// checkOneLineError checks stderr is one "sessionctl: " line.
func checkOneLineError(t *testing.T, r result) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "sessionctl: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one 'sessionctl: ' line: %q", r.stderr)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stderr shows a panic: %q", r.stderr)
	}
}

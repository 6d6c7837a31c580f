package bunstoretests

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3/vfs"
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// oldRelease is the release before created_at and user_key: its DDL and
// statements, copied verbatim from b1cab99:bunstore/sql.go ("?" is the
// table, or the schema, quoted by bun; the index names are what its
// pgIndexName gave for a short table name).
type oldRelease struct {
	ddl                     []string
	insert, update, select_ string
}

func oldReleaseSQL(d dialect.Name) oldRelease {
	r := oldRelease{
		update:  "UPDATE ? SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?",
		select_: "SELECT data, expiry_date, version FROM ? WHERE id = ? AND expiry_date > ?",
	}
	switch d {
	case dialect.PG:
		r.ddl = []string{
			"CREATE SCHEMA IF NOT EXISTS ?",
			`CREATE TABLE IF NOT EXISTS ? (id text COLLATE "C" PRIMARY KEY NOT NULL, data bytea NOT NULL, expiry_date timestamptz NOT NULL, version bigint NOT NULL DEFAULT 1)`,
			"CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)",
		}
		r.insert = "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"
	case dialect.MySQL:
		r.ddl = []string{
			"CREATE DATABASE IF NOT EXISTS ?",
			"CREATE TABLE IF NOT EXISTS ? (" +
				"id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, " +
				"data LONGBLOB NOT NULL, " +
				"expiry_date DATETIME(6) NOT NULL, " +
				"version BIGINT NOT NULL DEFAULT 1, " +
				"INDEX expiry_date_idx (expiry_date))",
		}
		r.insert = "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1)"
	default:
		r.ddl = []string{
			"CREATE TABLE IF NOT EXISTS ? (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expiry_date INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1)",
			"CREATE INDEX IF NOT EXISTS ? ON ? (expiry_date)",
		}
		r.insert = "INSERT INTO ? (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"
	}
	return r
}

// create makes the old release's table for s (which names it).
func (r oldRelease) create(t testing.TB, db *bun.DB, s *bunstore.Store) {
	t.Helper()
	ctx := context.Background()
	idx := bun.Ident(s.TableName() + "_expiry_date_idx")
	for _, q := range r.ddl {
		var args []any
		switch {
		case strings.HasPrefix(q, "CREATE SCHEMA"), strings.HasPrefix(q, "CREATE DATABASE"):
			args = []any{bun.Ident(s.SchemaName())}
		case strings.HasPrefix(q, "CREATE INDEX"):
			args = []any{idx, table(s)}
		default:
			args = []any{table(s)}
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("old release DDL %q: %v", q, err)
		}
	}
}

// oldExpiry is an expiry as the old release wrote it (as today's does).
func oldExpiry(d dialect.Name, t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	switch d {
	case dialect.MySQL:
		return t.Format("2006-01-02 15:04:05.000000")
	case dialect.SQLite:
		return t.UnixMicro()
	}
	return t
}

// oldBlob is a record the old release's MessagePack codec wrote for
//
//	n: 7, name: "alice", when: 2026-11-30 12:34:56.789 UTC,
//	roles: ["admin", "ops"], profile: {Name: "Bob", Age: 7}, raw: 00 01 02 ff
//
// (produced by b1cab99's bunstore.MsgPack.Marshal of each value and
// EncodeMap of the whole, run from `git archive b1cab99 bunstore core`).
var oldBlob, _ = hex.DecodeString("86a16e07a46e616d65a5616c696365a770726f66696c6582a44e616d65a3426f62a341676507a3726177c404000102ffa5726f6c657392a561646d696ea36f7073a47768656ed7ffbc1cbd006b0d6d70")

type oldProfile struct {
	Name string
	Age  int
}

// checkOldData decodes every value of oldBlob from rec with today's codec.
func checkOldData(t testing.TB, codec core.Codec, rec *core.Record, n int) {
	t.Helper()
	var (
		gotN    int
		name    string
		when    time.Time
		roles   []string
		profile oldProfile
		raw     []byte
	)
	for k, dst := range map[string]any{"n": &gotN, "name": &name, "when": &when, "roles": &roles, "profile": &profile, "raw": &raw} {
		if err := codec.Unmarshal(rec.Data[k], dst); err != nil {
			t.Fatalf("value %q of an old record: %v", k, err)
		}
	}
	if gotN != n || name != "alice" || !when.Equal(time.Date(2026, 11, 30, 12, 34, 56, 789000000, time.UTC)) ||
		!slices.Equal(roles, []string{"admin", "ops"}) || profile != (oldProfile{"Bob", 7}) || string(raw) != "\x00\x01\x02\xff" {
		t.Errorf("old record decodes to n=%d %q %v %v %+v %x", gotN, name, when, roles, profile, raw)
	}
}

const migrateChildEnv = "SQLSESSIONS_MIGRATE_CHILD"

// TestMigrateChild is the child process of migrateInProcesses: it opens the
// database named by SQLSESSIONS_MIGRATE_CHILD (dialect|schema or path),
// says "ready", waits for its stdin to close (so every child starts at
// once) and runs Migrate. Run alone, it skips.
func TestMigrateChild(t *testing.T) {
	spec := os.Getenv(migrateChildEnv)
	if spec == "" {
		t.Skip("the child process of TestMigrateUpgradesOldTable")
	}
	kind, arg, _ := strings.Cut(spec, "|")
	var db *bun.DB
	var opts []bunstore.Option
	switch kind {
	case "postgres":
		db, opts = dbtest.OpenPostgres(t), []bunstore.Option{bunstore.WithSchemaName(arg)}
	case "mysql":
		db, opts = dbtest.OpenMySQL(t), []bunstore.Option{bunstore.WithSchemaName(arg)}
	default:
		db = openSQLiteFile(t, arg)
	}
	s, err := bunstore.New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := s.Migrate(context.Background()); err != nil {
		fmt.Printf("Migrate: %v\n", err)
		t.Fatal(err)
	}
	fmt.Println("migrated")
}

// openSQLiteFile opens the SQLite file at path as dbtest.OpenSQLite does.
func openSQLiteFile(t testing.TB, path string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open("sqlite3", dbtest.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	n := 4
	if !vfs.SupportsFileLocking {
		n = 1 // one connection per file without locks, as dbtest does
	}
	sqldb.SetMaxOpenConns(n)
	sqldb.SetMaxIdleConns(n)
	t.Cleanup(func() { sqldb.Close() })
	return bun.NewDB(sqldb, sqlitedialect.New())
}

// migrateInProcesses runs Migrate in n processes at once (this test binary,
// re-executed), and fails unless every one succeeds. Where processes cannot
// be started (wasip1, js) it runs n stores on db from n goroutines instead.
func migrateInProcesses(t *testing.T, n int, spec string, db *bun.DB, opts []bunstore.Option) {
	t.Helper()
	if noSockets {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				s, err := bunstore.New(db, opts...)
				if err == nil {
					err = s.Migrate(context.Background())
					s.Close()
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return
	}
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
		lines []string
	}
	children := make([]*child, n)
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), migrateChildEnv+"="+spec)
		cmd.Stderr = cmd.Stdout
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		children[i] = c
		t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	}
	for i, c := range children {
		for c.out.Scan() {
			c.lines = append(c.lines, c.out.Text())
			if c.out.Text() == "ready" {
				break
			}
		}
		if len(c.lines) == 0 || c.lines[len(c.lines)-1] != "ready" {
			t.Fatalf("child %d never got ready:\n%s", i, strings.Join(c.lines, "\n"))
		}
	}
	for _, c := range children { // go
		c.stdin.Close()
	}
	for i, c := range children {
		for c.out.Scan() {
			c.lines = append(c.lines, c.out.Text())
		}
		err := c.cmd.Wait()
		if err != nil || !slices.Contains(c.lines, "migrated") {
			t.Errorf("child %d: %v\n%s", i, err, strings.Join(c.lines, "\n"))
		}
	}
}

// TestMigrateUpgradesOldTable creates the previous release's table (its DDL
// verbatim) holding sessions it wrote, runs today's Migrate from 4 processes
// at once while an old-release process keeps saving one of them, and checks
// that no row is lost or altered, the new columns and index exist, the old
// sessions load, save and keep their data through the middleware, they can
// be bound to a user, and the old release's statements still work on the
// upgraded table (a rolling deploy).
func TestMigrateUpgradesOldTable(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		if d.Name == "postgres-libpq" {
			continue // the same server as postgres
		}
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			var db *bun.DB
			var spec string
			if d.Name == "sqlite" {
				path := filepath.Join(t.TempDir(), "sessions.db")
				db, spec = openSQLiteFile(t, path), "sqlite|"+path
			} else {
				db = d.Open(t)
			}
			var opts []bunstore.Option
			if schema := dbtest.UniqueSchema(t, db); schema != "" {
				opts = append(opts, bunstore.WithSchemaName(schema))
				spec = d.Name + "|" + schema
			}
			s, err := bunstore.New(db, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			upgradeOldTable(t, db, s, spec, opts)
		})
	}
}

func upgradeOldTable(t *testing.T, db *bun.DB, s *bunstore.Store, spec string, opts []bunstore.Option) {
	ctx := context.Background()
	dn := db.Dialect().Name()
	old := oldReleaseSQL(dn)
	old.create(t, db, s)

	// Sessions the old release wrote: live ones, and a few expired.
	const live, expired = 200, 10
	toks := make([]core.Token, live+expired)
	for i := range toks {
		tok, err := core.NewToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = tok
		exp := time.Now().Add(time.Hour)
		if i >= live {
			exp = time.Now().Add(-time.Hour)
		}
		if _, err := db.ExecContext(ctx, old.insert, table(s), string(tok.ID()), oldBlob, oldExpiry(dn, exp)); err != nil {
			t.Fatalf("old release insert: %v", err)
		}
	}

	// An old-release process keeps saving session 0 during the upgrade.
	stop := make(chan struct{})
	var saves atomic.Int64
	var writerErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for v := int64(1); ; v++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := db.ExecContext(ctx, old.update, table(s), oldBlob, oldExpiry(dn, time.Now().Add(time.Hour)), string(toks[0].ID()), v)
			if err == nil {
				var n int64
				if n, err = res.RowsAffected(); err == nil && n != 1 {
					err = fmt.Errorf("version %d: %d rows", v, n)
				}
			}
			if err != nil {
				writerErr = fmt.Errorf("old-release save during the upgrade: %w", err)
				return
			}
			saves.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	})
	start := time.Now()
	migrateInProcesses(t, 4, spec, db, opts)
	t.Logf("%s: 4 Migrate calls at once (processes; goroutines on wasip1) took %v while the old release saved %d times", dn, time.Since(start), saves.Load())
	close(stop)
	wg.Wait()
	if writerErr != nil {
		t.Error(writerErr)
	}

	// Every row is there, unchanged.
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ?", table(s)).Scan(&n); err != nil || n != live+expired {
		t.Fatalf("%d rows after the upgrade (%v), want %d", n, err, live+expired)
	}
	checkUpgradedLayout(t, db, s)
	for i, tok := range toks[:live] {
		rec, err := s.Load(ctx, tok.ID(), now())
		if err != nil || rec == nil {
			t.Fatalf("old session %d: %+v, %v", i, rec, err)
		}
		wantVersion := uint64(1)
		if i == 0 {
			wantVersion += uint64(saves.Load())
		}
		if rec.Version != wantVersion || !rec.Created.IsZero() || rec.User != "" {
			t.Errorf("old session %d: version %d (want %d), created %v, user %q", i, rec.Version, wantVersion, rec.Created, rec.User)
		}
		checkOldData(t, s.Codec(), rec, 7)
	}

	// Through the middleware: they load, save, keep their data, and can be
	// bound to a user.
	h := newHTTPRig(t, s)
	for i, tok := range toks[:20] {
		if r := h.do("GET", tok.String(), ""); r.code != 200 || r.st.N != 7 {
			t.Fatalf("old session %d: GET %v", i, r)
		}
		if r := h.do("POST", tok.String(), "?user=bob"); r.code != 200 || r.st.N != 8 || r.st.User != "bob" {
			t.Fatalf("old session %d: POST %v", i, r)
		}
		rec, err := s.Load(ctx, tok.ID(), now())
		if err != nil || rec == nil {
			t.Fatalf("old session %d after a save: %v", i, err)
		}
		checkOldData(t, s.Codec(), rec, 8)
	}
	if list, err := s.UserSessions(ctx, "bob", now()); err != nil || len(list) != 20 {
		t.Errorf("UserSessions(bob): %d sessions, %v; want 20", len(list), err)
	}
	if got, err := s.DeleteUserSessions(ctx, "bob", toks[0].ID()); err != nil || got != 19 {
		t.Errorf("DeleteUserSessions(bob): %d, %v; want 19", got, err)
	}
	if deleted, err := s.DeleteExpired(ctx, now(), 0); err != nil || deleted != expired {
		t.Errorf("DeleteExpired: %d, %v; want the %d expired old sessions", deleted, err, expired)
	}

	// A rolling deploy: the old release's statements work on the new table,
	// and what it writes loads.
	tok, _ := core.NewToken(nil)
	if _, err := db.ExecContext(ctx, old.insert, table(s), string(tok.ID()), oldBlob, oldExpiry(dn, time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("old release insert after the upgrade: %v", err)
	}
	if res, err := db.ExecContext(ctx, old.update, table(s), oldBlob, oldExpiry(dn, time.Now().Add(time.Hour)), string(toks[30].ID()), 1); err != nil {
		t.Fatalf("old release update after the upgrade: %v", err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("old release update after the upgrade: %d rows", n)
	}
	var blob []byte
	var exp, version any
	if err := db.QueryRowContext(ctx, old.select_, table(s), string(toks[40].ID()), oldExpiry(dn, time.Now())).Scan(&blob, &exp, &version); err != nil || string(blob) != string(oldBlob) {
		t.Fatalf("old release select after the upgrade: %v", err)
	}
	if rec, err := s.Load(ctx, tok.ID(), now()); err != nil || rec == nil || rec.Version != 1 {
		t.Fatalf("a session the old release wrote after the upgrade: %+v, %v", rec, err)
	}

	// Migrate again changes nothing.
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
}

// checkUpgradedLayout: the table has today's columns and an index on
// user_key.
func checkUpgradedLayout(t *testing.T, db *bun.DB, s *bunstore.Store) {
	t.Helper()
	ctx := context.Background()
	var n int
	var err error
	switch db.Dialect().Name() {
	case dialect.PG:
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = ? AND tablename = ? AND indexdef LIKE '%(user_key)%'", s.SchemaName(), s.TableName()).Scan(&n)
	case dialect.MySQL:
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? AND column_name = 'user_key' AND seq_in_index = 1", s.SchemaName(), s.TableName()).Scan(&n)
	default:
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i WHERE i.name = 'user_key'", s.TableName()).Scan(&n)
	}
	if err != nil || n != 1 {
		t.Errorf("%d indexes on user_key (%v), want 1", n, err)
	}
	cols := layout(t, db, s).columns
	for _, c := range []string{"id", "data", "expiry_date", "version", "created_at", "user_key"} {
		if !strings.Contains(cols, c+" ") {
			t.Errorf("no column %s: %s", c, cols)
		}
	}
}

// tableLayout is what a table looks like from the catalog: its columns with
// their types and nullability, and its indexes.
type tableLayout struct{ columns, indexes string }

func layout(t testing.TB, db *bun.DB, s *bunstore.Store) tableLayout {
	t.Helper()
	var colQ, idxQ string
	var args []any
	switch db.Dialect().Name() {
	case dialect.PG:
		colQ = "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position"
		idxQ = "SELECT indexdef FROM pg_indexes WHERE schemaname = ? AND tablename = ? ORDER BY indexname"
		args = []any{s.SchemaName(), s.TableName()}
	case dialect.MySQL:
		colQ = "SELECT CONCAT(column_name, ' ', column_type, ' ', is_nullable) FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position"
		idxQ = "SELECT CONCAT(index_name, ' ', column_name, ' ', seq_in_index) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? ORDER BY index_name, seq_in_index"
		args = []any{s.SchemaName(), s.TableName()}
	default:
		colQ = "SELECT name || ' ' || type || ' ' || \"notnull\" FROM pragma_table_info(?) ORDER BY cid"
		idxQ = "SELECT l.name || ' ' || i.name FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i ORDER BY l.name, i.seqno"
		args = []any{s.TableName()}
	}
	var out tableLayout
	for q, dst := range map[string]*string{colQ: &out.columns, idxQ: &out.indexes} {
		rows, err := db.QueryContext(context.Background(), q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		rows.Close()
		*dst = strings.Join(lines, "; ") + ";"
	}
	return out
}

// towerSessionsDDL is the table tower-sessions-sqlx-store's migrate creates
// (maxcountryman/tower-sessions-stores, sqlx-store/src/*_store.rs), with
// its default names, which are also ours.
func towerSessionsDDL(d dialect.Name) []string {
	switch d {
	case dialect.PG:
		return []string{
			`create schema if not exists ?`,
			`create table if not exists ? (id text primary key not null, data bytea not null, expiry_date timestamptz not null)`,
		}
	case dialect.MySQL:
		return []string{
			`create schema if not exists ?`,
			`create table if not exists ? (id char(22) primary key not null, data blob not null, expiry_date timestamp(6) not null)`,
		}
	}
	return []string{`create table if not exists ? (id text primary key not null, data blob not null, expiry_date integer not null)`}
}

// TestMigrateRefusesTowerSessionsTable: Migrate on a table of
// tower-sessions' layout (no version column) fails with ErrTableLayout
// naming the columns it found and the ones it lacks, and changes nothing:
// no column, no index, no row (MySQL's DDL is not transactional, so nothing
// may be altered before the check).
func TestMigrateRefusesTowerSessionsTable(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var opts []bunstore.Option
		if schema := dbtest.UniqueSchema(t, db); schema != "" {
			opts = append(opts, bunstore.WithSchemaName(schema))
		}
		s, err := bunstore.New(db, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, q := range towerSessionsDDL(db.Dialect().Name()) {
			arg := table(s)
			if strings.HasPrefix(q, "create schema") {
				arg = bun.Ident(s.SchemaName())
			}
			if _, err := db.ExecContext(ctx, q, arg); err != nil {
				t.Fatal(err)
			}
		}
		// A tower-sessions row: its id, a MessagePack record of its own.
		if _, err := db.ExecContext(ctx, "INSERT INTO ? (id, data, expiry_date) VALUES (?, ?, ?)", table(s), "AAAAAAAAAAAAAAAAAAAAAA", []byte{0x93, 0x01, 0x02, 0x03}, oldExpiry(db.Dialect().Name(), time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		before := layout(t, db, s)

		err = s.Migrate(ctx)
		if !errors.Is(err, bunstore.ErrTableLayout) {
			t.Fatalf("Migrate: %v; want ErrTableLayout", err)
		}
		for _, want := range []string{"data, expiry_date, id", "lacks (version, created_at, user_key)", "tower-sessions"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
		t.Logf("Migrate: %v", err)
		if after := layout(t, db, s); after != before {
			t.Errorf("Migrate changed the table:\nbefore %+v\nafter  %+v", before, after)
		}
		var id string
		var data []byte
		var n int
		if err := db.QueryRowContext(ctx, "SELECT id, data, (SELECT COUNT(*) FROM ?) FROM ?", table(s), table(s)).Scan(&id, &data, &n); err != nil || n != 1 || id != "AAAAAAAAAAAAAAAAAAAAAA" || string(data) != "\x93\x01\x02\x03" {
			t.Errorf("the row after Migrate: %q %x, %d rows, %v", id, data, n, err)
		}
		// Every statement of the store fails clearly rather than
		// corrupting the table: a second Migrate too.
		if err := s.Migrate(ctx); !errors.Is(err, bunstore.ErrTableLayout) {
			t.Errorf("Migrate again: %v", err)
		}
	})
}

// TestMigrateFinishesAnInterruptedUpgrade: an upgrade that stopped after
// adding the columns and before indexing user_key (MySQL's DDL is not
// transactional: a process killed between its ALTERs leaves that; elsewhere
// an administrator could) is finished by the next Migrate, which adds the
// index instead of taking the columns as proof that it exists.
func TestMigrateFinishesAnInterruptedUpgrade(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var opts []bunstore.Option
		if schema := dbtest.UniqueSchema(t, db); schema != "" {
			opts = append(opts, bunstore.WithSchemaName(schema))
		}
		s, err := bunstore.New(db, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		oldReleaseSQL(db.Dialect().Name()).create(t, db, s)
		timeType, userType := "INTEGER", "TEXT"
		switch db.Dialect().Name() {
		case dialect.PG:
			timeType = "timestamptz"
		case dialect.MySQL:
			timeType, userType = "DATETIME(6) NULL", "VARBINARY(255) NULL"
		}
		for _, c := range []string{"created_at " + timeType, "user_key " + userType} {
			if _, err := db.ExecContext(ctx, "ALTER TABLE ? ADD COLUMN "+c, table(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		checkUpgradedLayout(t, db, s)
	})
}

// TestMigrateUpgradesLargeTable upgrades a previous-release table of
// SQLSESSIONS_UPGRADE_ROWS rows (skipped when unset; BENCHMARKS.md used
// 1,000,000) while an old-release writer keeps saving one session, and
// reports how long Migrate took and the longest the writer waited.
func TestMigrateUpgradesLargeTable(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("SQLSESSIONS_UPGRADE_ROWS"))
	if rows < 1 {
		t.Skip("set SQLSESSIONS_UPGRADE_ROWS to the number of rows to upgrade")
	}
	for _, d := range dbtest.Dialects() {
		if d.Name == "postgres-libpq" {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			ctx := context.Background()
			var opts []bunstore.Option
			if schema := dbtest.UniqueSchema(t, db); schema != "" {
				opts = append(opts, bunstore.WithSchemaName(schema))
			}
			s, err := bunstore.New(db, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			dn := db.Dialect().Name()
			old := oldReleaseSQL(dn)
			old.create(t, db, s)
			exp := oldExpiry(dn, time.Now().Add(time.Hour))
			var q string
			switch dn {
			case dialect.PG:
				q = "INSERT INTO ? (id, data, expiry_date) SELECT lpad(i::text, 22, '0'), ?, ? FROM generate_series(1, ?) AS i"
			case dialect.MySQL:
				q = "INSERT INTO ? (id, data, expiry_date) SELECT LPAD(i, 22, '0'), ?, ? FROM (" + mysqlSeq(rows) + ") AS x WHERE i <= ?"
			default:
				q = "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?) INSERT INTO ? (id, data, expiry_date) SELECT printf('%022d', i), ?, ? FROM g"
			}
			args := []any{table(s), oldBlob, exp, rows}
			switch dn {
			case dialect.SQLite:
				args = []any{rows, table(s), oldBlob, exp}
			}
			t0 := time.Now()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("filling: %v", err)
			}
			t.Logf("%s: %d old rows in %v", d.Name, rows, time.Since(t0).Round(time.Millisecond))

			stop := make(chan struct{})
			var worst time.Duration
			var writes int
			var wg sync.WaitGroup
			id := fmt.Sprintf("%022d", 1)
			wg.Go(func() {
				for v := int64(1); ; v++ {
					select {
					case <-stop:
						return
					default:
					}
					w0 := time.Now()
					_, err := db.ExecContext(ctx, old.update, table(s), oldBlob, exp, id, v)
					if d := time.Since(w0); d > worst {
						worst = d
					}
					if err != nil {
						t.Errorf("old-release save during the upgrade: %v", err)
						return
					}
					writes++
					time.Sleep(time.Millisecond)
				}
			})
			time.Sleep(50 * time.Millisecond)
			t0 = time.Now()
			err = s.Migrate(ctx)
			took := time.Since(t0)
			time.Sleep(50 * time.Millisecond)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ?", table(s)).Scan(&n); err != nil || n != rows {
				t.Fatalf("%d rows after Migrate (%v), want %d", n, err, rows)
			}
			checkUpgradedLayout(t, db, s)
			t.Logf("%s: Migrate of %d rows took %v; %d old-release saves meanwhile, the slowest %v", d.Name, rows, took.Round(time.Millisecond), writes, worst.Round(time.Millisecond))
		})
	}
}

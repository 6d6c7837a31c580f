// Package store benchmarks the session stores side by side, one operation at
// a time, on PostgreSQL, MariaDB/MySQL and SQLite:
//
//   - sqlsessions: bunstore.Store (Load, Save, Create on a core.Record; the
//     store encodes and decodes the MessagePack blob);
//   - scs: alexedwards/scs v2's store for the same database (postgresstore,
//     mysqlstore, sqlite3store) plus scs's default GobCodec, which the scs
//     SessionManager runs on every load and save, so both sides go from a
//     map of values to the database and back;
//   - raw: the floor, one hand-written prepared statement on the same
//     *sql.DB and the same table as sqlsessions, with a pre-encoded blob.
//
// All three sides share one *sql.DB per dialect (same driver, same pool
// settings) and run with b.RunParallel at the same parallelism. Run:
//
//	cd tools && go test -run '^$' -bench . -benchmem ./bench/store
//
// Without -bench, TestSidesWork checks once that every side works.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/mysqlstore"
	"github.com/alexedwards/scs/postgresstore"
	"github.com/alexedwards/scs/sqlite3store"
	"github.com/alexedwards/scs/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
)

// parallelism is the b.SetParallelism factor every side runs with:
// parallelism*GOMAXPROCS goroutines (16 on a 2-core machine).
const parallelism = 8

// seeded is how many sessions each side holds before Load and Save run;
// Save gives each goroutine its own session, so it bounds the goroutines.
const seeded = 512

// scsStore is the part of scs.Store the benchmarks use.
type scsStore interface {
	Find(token string) ([]byte, bool, error)
	Commit(token string, b []byte, expiry time.Time) error
}

// env is one dialect's database with the three sides on it.
type env struct {
	name  string
	db    *bun.DB
	ours  *bunstore.Store
	scs   scsStore
	codec scs.GobCodec

	// raw prepared statements on ours' table.
	rawLoad, rawSave, rawCreate *sql.Stmt
	// rawExpiry converts a time to the expiry column's argument.
	rawExpiry func(time.Time) any
	// rawScanExpiry receives the expiry column.
	rawScanExpiry func() any
	// analyze refreshes the planner statistics of both tables, so that no
	// side runs before and another after an automatic ANALYZE changes the
	// plans.
	analyze []string
	// reset runs before every measured run, so that each side starts from
	// the same write-ahead-log state instead of the first side paying for
	// growing the log and the later ones reusing it.
	reset []string
}

// newID draws an id the way core does (a random token's SHA-256-derived
// ID); every side uses it, so id generation costs all sides the same.
func newID() (core.ID, error) {
	t, err := core.NewToken(nil)
	if err != nil {
		return "", err
	}
	return t.ID(), nil
}

func mustID(tb testing.TB) core.ID {
	id, err := newID()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustExec(tb testing.TB, db *sql.DB, queries ...string) {
	tb.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
}

func prepare(tb testing.TB, db *sql.DB, q string) *sql.Stmt {
	tb.Helper()
	st, err := db.Prepare(q)
	if err != nil {
		tb.Fatalf("prepare %s: %v", q, err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

func setupPostgres(tb testing.TB) *env {
	db := dbtest.OpenPostgres(tb)
	ours := dbtest.NewStore(tb, db)
	schema := ours.SchemaName()
	table := fmt.Sprintf("%q.%q", schema, ours.TableName())
	mustExec(tb, db.DB,
		fmt.Sprintf(`CREATE TABLE %q.sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`, schema),
		fmt.Sprintf(`CREATE INDEX sessions_expiry_idx ON %q.sessions (expiry)`, schema))
	e := &env{
		name: "postgres", db: db, ours: ours,
		scs:           postgresstore.NewWithConfig(db.DB, postgresstore.Config{TableName: schema + ".sessions"}),
		rawExpiry:     func(t time.Time) any { return t },
		rawScanExpiry: func() any { return new(time.Time) },
		analyze:       []string{"ANALYZE " + table, fmt.Sprintf("ANALYZE %q.sessions", schema)},
		reset:         []string{"CHECKPOINT"},
	}
	e.rawLoad = prepare(tb, db.DB, "SELECT data, expiry_date, version FROM "+table+" WHERE id = $1 AND expiry_date > $2")
	e.rawSave = prepare(tb, db.DB, "UPDATE "+table+" SET data = $1, expiry_date = $2, version = version + 1 WHERE id = $3 AND version = $4")
	e.rawCreate = prepare(tb, db.DB, "INSERT INTO "+table+" (id, data, expiry_date, version) VALUES ($1, $2, $3, 1) ON CONFLICT (id) DO NOTHING")
	return e
}

func setupMySQL(tb testing.TB) *env {
	admin := dbtest.OpenMySQL(tb)
	schema := dbtest.UniqueSchema(tb, admin)
	mustExec(tb, admin.DB, "CREATE DATABASE `"+schema+"`")
	// mysqlstore always uses the table "sessions" of the connection's
	// database: open the pool on the fresh database.
	cfg, err := mysql.ParseDSN(dbtest.MySQLDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.DBName = schema
	db := dbtest.OpenMySQLDSN(tb, cfg.FormatDSN())
	ours, err := bunstore.New(db, bunstore.WithSchemaName(schema))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ours.Close() })
	if err := ours.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	table := "`" + schema + "`.`" + ours.TableName() + "`"
	mustExec(tb, db.DB,
		"CREATE TABLE sessions (token CHAR(43) PRIMARY KEY, data BLOB NOT NULL, expiry TIMESTAMP(6) NOT NULL)",
		"CREATE INDEX sessions_expiry_idx ON sessions (expiry)")
	e := &env{
		name: "mysql", db: db, ours: ours,
		scs:           mysqlstore.NewWithCleanupInterval(db.DB, 0),
		rawExpiry:     func(t time.Time) any { return t.UTC() },
		rawScanExpiry: func() any { return new(time.Time) },
		analyze:       []string{"ANALYZE TABLE " + table + ", sessions"},
	}
	e.rawLoad = prepare(tb, db.DB, "SELECT data, expiry_date, version FROM "+table+" WHERE id = ? AND expiry_date > ?")
	e.rawSave = prepare(tb, db.DB, "UPDATE "+table+" SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?")
	e.rawCreate = prepare(tb, db.DB, "INSERT INTO "+table+" (id, data, expiry_date, version) VALUES (?, ?, ?, 1)")
	return e
}

func setupSQLite(tb testing.TB) *env {
	db, err := sqlitewasm.Open(filepath.Join(tb.TempDir(), "bench.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	ours := dbtest.NewStore(tb, db)
	table := fmt.Sprintf("%q", ours.TableName())
	mustExec(tb, db.DB,
		"CREATE TABLE sessions (token TEXT PRIMARY KEY, data BLOB NOT NULL, expiry REAL NOT NULL)",
		"CREATE INDEX sessions_expiry_idx ON sessions(expiry)")
	e := &env{
		name: "sqlite", db: db, ours: ours,
		scs:           sqlite3store.NewWithConfig(db.DB, sqlite3store.Config{}),
		rawExpiry:     func(t time.Time) any { return t.UnixMicro() },
		rawScanExpiry: func() any { return new(int64) },
		analyze:       []string{"ANALYZE"},
		reset:         []string{"PRAGMA wal_checkpoint(TRUNCATE)"},
	}
	e.rawLoad = prepare(tb, db.DB, "SELECT data, expiry_date, version FROM "+table+" WHERE id = ? AND expiry_date > ?")
	e.rawSave = prepare(tb, db.DB, "UPDATE "+table+" SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?")
	e.rawCreate = prepare(tb, db.DB, "INSERT INTO "+table+" (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING")
	return e
}

var dialects = []struct {
	name  string
	setup func(testing.TB) *env
}{
	{"postgres", setupPostgres},
	{"mysql", setupMySQL},
	{"sqlite", setupSQLite},
}

// session is one seeded session of each side.
type session struct {
	id      core.ID
	version uint64 // ours and raw
}

// fixture holds the seeded sessions and the values every side writes.
type fixture struct {
	*env
	ours, scs, raw []session
	oursData       map[string][]byte // core.Record data: {"counter": 42}
	scsValues      map[string]any    // the same for scs
	rawBlob        []byte            // the same, encoded once
}

func (e *env) fixture(tb testing.TB, n int) *fixture {
	tb.Helper()
	ctx := context.Background()
	counter, err := e.ours.Codec().Marshal(42)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{env: e, oursData: map[string][]byte{"counter": counter}, scsValues: map[string]any{"counter": 42}}
	if f.rawBlob, err = e.ours.Codec().EncodeMap(f.oursData); err != nil {
		tb.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for range n {
		s := session{id: mustID(tb)}
		rec := &core.Record{ID: s.id, Data: f.oursData, Expiry: exp}
		if err := e.ours.Create(ctx, rec); err != nil {
			tb.Fatalf("sqlsessions create: %v", err)
		}
		s.version = rec.Version
		f.ours = append(f.ours, s)

		s = session{id: mustID(tb)}
		b, err := f.codec.Encode(exp, f.scsValues)
		if err != nil {
			tb.Fatal(err)
		}
		if err := e.scs.Commit(string(s.id), b, exp); err != nil {
			tb.Fatalf("scs commit: %v", err)
		}
		f.scs = append(f.scs, s)

		s = session{id: mustID(tb), version: 1}
		if _, err := e.rawCreate.Exec(string(s.id), f.rawBlob, e.rawExpiry(exp)); err != nil {
			tb.Fatalf("raw create: %v", err)
		}
		f.raw = append(f.raw, s)
	}
	mustExec(tb, e.db.DB, e.analyze...)
	return f
}

// warmUp runs every operation of every side n times, unmeasured, so that
// connections, prepared statements and caches are in place before the first
// measured side runs.
func (f *fixture) warmUp(tb testing.TB, n int) {
	tb.Helper()
	ctx := context.Background()
	for _, op := range ops {
		for _, s := range f.sides(op) {
			for i := range n {
				if err := s.run(ctx, 0, i); err != nil {
					tb.Fatalf("warm-up %s %s: %v", op, s.name, err)
				}
			}
		}
	}
}

// side is one implementation of one operation. slot is the goroutine's own
// index (Save writes only its slot's session, so versions stay exact); i
// counts the goroutine's iterations.
type side struct {
	name string
	run  func(ctx context.Context, slot, i int) error
}

// pick spreads a goroutine's loads over all seeded sessions.
func pick(slot, i, n int) int { return (slot*7919 + i) % n }

func (f *fixture) expiry() time.Time { return time.Now().Add(time.Hour) }

func (f *fixture) sides(op string) []side {
	switch op {
	case "Load":
		return []side{
			{"sqlsessions", func(ctx context.Context, slot, i int) error {
				rec, err := f.env.ours.Load(ctx, f.ours[pick(slot, i, len(f.ours))].id, time.Now())
				if err == nil && (rec == nil || len(rec.Data["counter"]) == 0) {
					err = fmt.Errorf("sqlsessions load: session missing")
				}
				return err
			}},
			{"scs", func(ctx context.Context, slot, i int) error {
				b, ok, err := f.env.scs.Find(string(f.scs[pick(slot, i, len(f.scs))].id))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("scs find: session missing")
				}
				_, v, err := f.codec.Decode(b)
				if err == nil && v["counter"] != 42 {
					err = fmt.Errorf("scs load: counter = %v", v["counter"])
				}
				return err
			}},
			{"raw", func(ctx context.Context, slot, i int) error {
				var (
					data    []byte
					version int64
				)
				err := f.rawLoad.QueryRowContext(ctx, string(f.raw[pick(slot, i, len(f.raw))].id), f.rawExpiry(time.Now())).Scan(&data, f.rawScanExpiry(), &version)
				if err == nil && len(data) == 0 {
					err = fmt.Errorf("raw load: empty data")
				}
				return err
			}},
		}
	case "Save":
		return []side{
			{"sqlsessions", func(ctx context.Context, slot, i int) error {
				s := &f.ours[slot]
				rec := &core.Record{ID: s.id, Data: f.oursData, Expiry: f.expiry(), Version: s.version}
				if err := f.env.ours.Save(ctx, rec); err != nil {
					return err
				}
				s.version = rec.Version
				return nil
			}},
			{"scs", func(ctx context.Context, slot, i int) error {
				exp := f.expiry()
				b, err := f.codec.Encode(exp, f.scsValues)
				if err != nil {
					return err
				}
				return f.env.scs.Commit(string(f.scs[slot].id), b, exp)
			}},
			{"raw", func(ctx context.Context, slot, i int) error {
				s := &f.raw[slot]
				res, err := f.rawSave.ExecContext(ctx, f.rawBlob, f.rawExpiry(f.expiry()), string(s.id), int64(s.version))
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil || n != 1 {
					return fmt.Errorf("raw save: %d rows, %v", n, err)
				}
				s.version++
				return nil
			}},
		}
	case "Create":
		return []side{
			{"sqlsessions", func(ctx context.Context, slot, i int) error {
				id, err := newID()
				if err != nil {
					return err
				}
				return f.env.ours.Create(ctx, &core.Record{ID: id, Data: f.oursData, Expiry: f.expiry()})
			}},
			{"scs", func(ctx context.Context, slot, i int) error {
				id, err := newID()
				if err != nil {
					return err
				}
				exp := f.expiry()
				b, err := f.codec.Encode(exp, f.scsValues)
				if err != nil {
					return err
				}
				return f.env.scs.Commit(string(id), b, exp)
			}},
			{"raw", func(ctx context.Context, slot, i int) error {
				id, err := newID()
				if err != nil {
					return err
				}
				res, err := f.rawCreate.ExecContext(ctx, string(id), f.rawBlob, f.rawExpiry(f.expiry()))
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil || n != 1 {
					return fmt.Errorf("raw create: %d rows, %v", n, err)
				}
				return nil
			}},
		}
	}
	panic("unknown op " + op)
}

var ops = []string{"Load", "Save", "Create"}

// BenchmarkStore runs every operation of every side on every dialect:
// BenchmarkStore/<dialect>/<op>/<side>.
func BenchmarkStore(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			f := d.setup(b).fixture(b, seeded)
			f.warmUp(b, 200)
			for _, op := range ops {
				b.Run(op, func(b *testing.B) {
					for _, s := range f.sides(op) {
						b.Run(s.name, func(b *testing.B) {
							mustExec(b, f.db.DB, f.reset...)
							runParallel(b, s)
						})
					}
				})
			}
		})
	}
}

func runParallel(b *testing.B, s side) {
	var slots atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		slot := int(slots.Add(1) - 1)
		if slot >= seeded {
			b.Errorf("%d goroutines, more than the %d seeded sessions", slot+1, seeded)
			return
		}
		for i := 0; pb.Next(); i++ {
			if err := s.run(ctx, slot, i); err != nil {
				b.Errorf("%s: %v", s.name, err)
				return
			}
		}
	})
}

// TestSidesWork runs every operation of every side a few times on every
// dialect, so the benchmarks' code is exercised (and its checks applied) by
// an ordinary test run.
func TestSidesWork(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			f := d.setup(t).fixture(t, 2)
			ctx := context.Background()
			for _, op := range ops {
				for _, s := range f.sides(op) {
					for i := range 3 {
						if err := s.run(ctx, i%2, i); err != nil {
							t.Errorf("%s %s: %v", op, s.name, err)
						}
					}
				}
			}
			// Saves incremented the versions of ours and raw: 3 saves over
			// two slots.
			if f.ours[0].version != 3 || f.raw[0].version != 3 {
				t.Errorf("versions after two saves: sqlsessions %d, raw %d, want 3", f.ours[0].version, f.raw[0].version)
			}
			rec, err := f.env.ours.Load(ctx, f.ours[0].id, time.Now())
			if err != nil || rec == nil || rec.Version != 3 {
				t.Errorf("sqlsessions load after saves: %+v, %v", rec, err)
			}
		})
	}
}

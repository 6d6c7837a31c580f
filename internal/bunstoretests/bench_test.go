package bunstoretests

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The benchmarks run each operation through the store and, side by side on
// the same pool, as the best hand-written database/sql equivalent: the same
// single statement, prepared, with bound arguments (the floor). Run them with
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/bunstoretests
//
// and compare store/raw per operation and dialect. They run 4 goroutines
// per GOMAXPROCS (-cpu changes it) on pools of dbtest.PoolSize
// connections (4 on SQLite). On a busy machine consecutive benchmarks see
// different loads; TestFloorRatio (SQLSESSIONS_BENCH_RATIO=1) alternates
// store and floor in short rounds and reports median ratios instead.

// rawStatements is the floor: hand-written SQL for one table.
type rawStatements struct {
	load, save, create *sql.Stmt
	// loadOne reads one integer (the version) of the row load reads: what
	// a hand-written counter that keeps one integer per session reads.
	loadOne *sql.Stmt
	expiry  func(time.Time) any
}

func prepareRaw(b testing.TB, db *bun.DB, s *bunstore.Store) *rawStatements {
	b.Helper()
	tbl := s.TableName()
	if s.SchemaName() != "" {
		tbl = s.SchemaName() + "." + tbl
	}
	var load, save, create, loadOne string
	r := &rawStatements{}
	switch db.Dialect().Name() {
	case dialect.PG:
		load = "SELECT data, expiry_date, version FROM " + tbl + " WHERE id = $1 AND expiry_date > $2"
		loadOne = "SELECT version FROM " + tbl + " WHERE id = $1 AND expiry_date > $2"
		save = "UPDATE " + tbl + " SET data = $1, expiry_date = $2, version = version + 1 WHERE id = $3 AND version = $4"
		create = "INSERT INTO " + tbl + " (id, data, expiry_date, version) VALUES ($1, $2, $3, 1) ON CONFLICT (id) DO NOTHING"
		r.expiry = func(t time.Time) any { return t }
	case dialect.MySQL:
		load = "SELECT data, expiry_date, version FROM " + tbl + " WHERE id = ? AND expiry_date > ?"
		loadOne = "SELECT version FROM " + tbl + " WHERE id = ? AND expiry_date > ?"
		save = "UPDATE " + tbl + " SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?"
		create = "INSERT INTO " + tbl + " (id, data, expiry_date, version) VALUES (?, ?, ?, 1)"
		r.expiry = func(t time.Time) any { return t } // parseTime=true&loc=UTC
	default:
		load = "SELECT data, expiry_date, version FROM " + tbl + " WHERE id = ? AND expiry_date > ?"
		loadOne = "SELECT version FROM " + tbl + " WHERE id = ? AND expiry_date > ?"
		save = "UPDATE " + tbl + " SET data = ?, expiry_date = ?, version = version + 1 WHERE id = ? AND version = ?"
		create = "INSERT INTO " + tbl + " (id, data, expiry_date, version) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"
		r.expiry = func(t time.Time) any { return t.UnixMicro() }
	}
	for _, x := range []struct {
		dst **sql.Stmt
		q   string
	}{{&r.load, load}, {&r.loadOne, loadOne}, {&r.save, save}, {&r.create, create}} {
		st, err := db.DB.Prepare(x.q)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		*x.dst = st
	}
	return r
}

var benchSeq atomic.Int64

// benchID returns a distinct id per call, the same way for store and floor.
func benchID() string { return fmt.Sprintf("bench-%020d", benchSeq.Add(1)) }

// fixture is what the store benchmarks and the ratio test share: a store, the
// raw floor's statements on the same table, a one-key record, its blob, an
// expiry, and 200 seeded sessions to load, as in the seed's counter workload.
type fixture struct {
	s    *bunstore.Store
	raw  *rawStatements
	data map[string][]byte
	blob []byte
	exp  time.Time
	ids  []core.ID
}

func newFixture(tb testing.TB, db *bun.DB, opts ...bunstore.Option) fixture {
	tb.Helper()
	s := dbtest.NewStore(tb, db, opts...)
	f := fixture{s: s, raw: prepareRaw(tb, db, s), exp: time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond)}
	value, _ := s.Codec().Marshal(42)
	f.data = map[string][]byte{"counter": value}
	f.blob, _ = s.Codec().EncodeMap(f.data)
	f.ids = make([]core.ID, 200)
	for i := range f.ids {
		rec := &core.Record{ID: core.ID(benchID()), Data: f.data, Expiry: f.exp}
		if err := s.Create(context.Background(), rec); err != nil {
			tb.Fatal(err)
		}
		f.ids[i] = rec.ID
	}
	return f
}

// benchDialect is a database and driver to measure, with the store's
// options.
type benchDialect struct {
	dbtest.Dialect
	opts []bunstore.Option
}

// benchDialects are the databases and drivers the benchmarks measure:
// every dialect, plus the settings bunstore documents for PgBouncer on a
// direct connection (pgx with default_query_exec_mode=exec, lib/pq with
// binary_parameters=yes and WithPreparedStatements(false)), and
// WithBunQueryHooks on PostgreSQL and SQLite (no hook registered: the cost
// of bun's query path itself).
func benchDialects() []benchDialect {
	var out []benchDialect
	for _, d := range dbtest.Dialects() {
		out = append(out, benchDialect{Dialect: d})
		if d.Name == "postgres" || d.Name == "sqlite" {
			h := d
			h.Name += "-bunhooks"
			out = append(out, benchDialect{h, []bunstore.Option{bunstore.WithBunQueryHooks()}})
		}
		if d.Name == "postgres" {
			d.Name += "-exec"
			d.Open = func(t testing.TB) *bun.DB { return dbtest.OpenPostgresParams(t, "pgx", "default_query_exec_mode=exec") }
			out = append(out, benchDialect{Dialect: d})
		}
		if d.Name == "postgres-libpq" {
			d.Name += "-unprepared"
			d.Open = func(t testing.TB) *bun.DB { return dbtest.OpenPostgresParams(t, "postgres", "binary_parameters=yes") }
			out = append(out, benchDialect{d, []bunstore.Option{bunstore.WithPreparedStatements(false)}})
		}
	}
	return out
}

func BenchmarkStore(b *testing.B) {
	for _, d := range benchDialects() {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			f := newFixture(b, db, d.opts...)
			s, raw, data, blob, exp, ids := f.s, f.raw, f.data, f.blob, f.exp, f.ids
			ctx := context.Background()

			b.Run("Load/store", func(b *testing.B) {
				var n atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						rec, err := s.Load(ctx, ids[n.Add(1)%int64(len(ids))], time.Now())
						if err != nil || rec == nil {
							b.Fatal(rec, err)
						}
					}
				})
			})
			b.Run("Load/raw", func(b *testing.B) {
				var n atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					var (
						data    []byte
						expTime time.Time
						expInt  int64
						version int64
					)
					expDst := any(&expTime)
					if db.Dialect().Name() == dialect.SQLite {
						expDst = &expInt
					}
					for pb.Next() {
						err := raw.load.QueryRowContext(ctx, string(ids[n.Add(1)%int64(len(ids))]), raw.expiry(time.Now().UTC())).Scan(&data, expDst, &version)
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			})
			b.Run("Save/store", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					rec := &core.Record{ID: core.ID(benchID()), Data: data, Expiry: exp}
					if err := s.Create(ctx, rec); err != nil {
						b.Fatal(err)
					}
					for pb.Next() {
						rec.Expiry = time.Now().UTC().Add(time.Hour)
						if err := s.Save(ctx, rec); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
			b.Run("Save/raw", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					id := benchID()
					if _, err := raw.create.ExecContext(ctx, id, blob, raw.expiry(exp)); err != nil {
						b.Fatal(err)
					}
					version := int64(1)
					for pb.Next() {
						res, err := raw.save.ExecContext(ctx, blob, raw.expiry(time.Now().UTC().Add(time.Hour)), id, version)
						if err != nil {
							b.Fatal(err)
						}
						if n, _ := res.RowsAffected(); n != 1 {
							b.Fatal("conflict")
						}
						version++
					}
				})
			})
			b.Run("Create/store", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						rec := &core.Record{ID: core.ID(benchID()), Data: data, Expiry: exp}
						if err := s.Create(ctx, rec); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
			b.Run("Create/raw", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						res, err := raw.create.ExecContext(ctx, benchID(), blob, raw.expiry(exp))
						if err != nil {
							b.Fatal(err)
						}
						if n, _ := res.RowsAffected(); n != 1 {
							b.Fatal("collision")
						}
					}
				})
			})
		})
	}
}

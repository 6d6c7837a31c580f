package bunstoretests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// eachDialect runs fn as a parallel subtest per dialect and driver.
func eachDialect(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	for _, d := range dbtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, d.Open(t))
		})
	}
}

func newID(t testing.TB) core.ID {
	t.Helper()
	tok, err := core.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok.ID()
}

func newRecord(t testing.TB, s core.Store, expiry time.Time, kv ...any) *core.Record {
	t.Helper()
	rec := &core.Record{ID: newID(t), Data: map[string][]byte{}, Expiry: expiry}
	for i := 0; i+1 < len(kv); i += 2 {
		b, err := s.Codec().Marshal(kv[i+1])
		if err != nil {
			t.Fatal(err)
		}
		rec.Data[kv[i].(string)] = b
	}
	return rec
}

func now() time.Time { return time.Now().UTC() }

// TestDefaultNamesMigrate migrates with the default names where a run can
// have them to itself: a fresh PostgreSQL database, a fresh SQLite file.
func TestDefaultNamesMigrate(t *testing.T) {
	for name, open := range map[string]func(testing.TB) *bun.DB{
		"postgres": dbtest.OpenPostgresDatabase,
		"sqlite":   dbtest.OpenSQLite,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			s, err := bunstore.New(db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			for range 2 {
				if err := s.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			q := "SELECT count(*) FROM tower_sessions.session"
			if name == "sqlite" {
				q = "SELECT count(*) FROM tower_sessions"
			}
			var n int
			if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%s: %d, %v", q, n, err)
			}
		})
	}
}

// TestMigrateConcurrent migrates a schema that does not exist yet from 8
// goroutines (each with its own store, as separate processes would) at once.
func TestMigrateConcurrent(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		var opts []bunstore.Option
		if schema := dbtest.UniqueSchema(t, db); schema != "" {
			opts = append(opts, bunstore.WithSchemaName(schema))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				s, err := bunstore.New(db, opts...)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				errs <- s.Migrate(context.Background())
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		s, err := bunstore.New(db, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
		if err := s.Create(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPrepareBeforeMigrate: a statement that fails to prepare because the
// table does not exist yet is not cached; after Migrate it works.
func TestPrepareBeforeMigrate(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		var opts []bunstore.Option
		if schema := dbtest.UniqueSchema(t, db); schema != "" {
			opts = append(opts, bunstore.WithSchemaName(schema))
		}
		s, err := bunstore.New(db, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		if _, err := s.Load(ctx, newID(t), now()); err == nil {
			t.Fatal("Load before Migrate succeeded")
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Load(ctx, rec.ID, now()); err != nil || got == nil {
			t.Fatalf("Load after Migrate: %v, %v", got, err)
		}
	})
}

func TestClosed(t *testing.T) {
	s := dbtest.NewStore(t, dbtest.OpenSQLite(t))
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, rec.ID, now()); !errors.Is(err, bunstore.ErrClosed) {
		t.Errorf("Load after Close: %v", err)
	}
	if err := s.Save(ctx, rec); !errors.Is(err, bunstore.ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// rawExec runs a statement on the store's table, formatted by bun.
func table(s *bunstore.Store) bun.Ident {
	if s.SchemaName() != "" {
		return bun.Ident(s.SchemaName() + "." + s.TableName())
	}
	return bun.Ident(s.TableName())
}

func TestCorruptRecord(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		for _, garbage := range [][]byte{{}, {0xc1}, []byte("not msgpack"), {0x81, 0xa1, 'k'}, {0x80, 0x00}} {
			if _, err := db.NewUpdate().Table(string(table(s))).Set("data = ?", garbage).Where("id = ?", string(rec.ID)).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load(ctx, rec.ID, now())
			if !errors.Is(err, core.ErrCorruptRecord) || got != nil {
				t.Errorf("Load of data %x: %v, %v; want ErrCorruptRecord", garbage, got, err)
			}
		}
	})
}

// TestTokenNotStored: the id column holds the token's derived ID, never the
// cookie value.
func TestTokenNotStored(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		sess := core.NewSession(s, "", nil)
		if err := sess.Insert(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		if _, err := sess.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		token := sess.Token().String()
		var ids []string
		if err := db.NewSelect().Table(string(table(s))).Column("id").Scan(ctx, &ids); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 1 || ids[0] == token || strings.Contains(ids[0], token) || ids[0] != string(sess.ID()) {
			t.Fatalf("stored ids %q for token %q (id %q)", ids, token, sess.ID())
		}
	})
}

// TestExpiryPrecision: expiries keep microseconds, far dates (2040, 9999)
// round-trip, and the load filter compares at microsecond precision.
func TestExpiryPrecision(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		checkExpiries(t, s)
	})
}

func checkExpiries(t *testing.T, s *bunstore.Store) {
	t.Helper()
	ctx := context.Background()
	for _, exp := range []time.Time{
		time.Date(2040, 2, 29, 23, 59, 59, 123456789, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 1000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(2030, 6, 1, 12, 0, 0, 1000, time.FixedZone("+05", 5*3600)),
	} {
		rec := newRecord(t, s, exp, "k", "v")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		want := exp.UTC().Truncate(time.Microsecond)
		at := want.Add(-time.Microsecond)
		got, err := s.Load(ctx, rec.ID, at)
		if err != nil || got == nil {
			t.Fatalf("Load 1µs before %s: %v, %v", want, got, err)
		}
		if !got.Expiry.Equal(want) || got.Expiry.Location() != time.UTC {
			t.Errorf("expiry %s read back as %s", want, got.Expiry)
		}
		if got, err := s.Load(ctx, rec.ID, want); err != nil || got != nil {
			t.Errorf("Load at the expiry %s: %v, %v; want none", want, got, err)
		}
	}
}

// TestMySQLTimeZones: expiries round-trip exactly whatever the session
// time_zone and the DSN's loc and parseTime.
func TestMySQLTimeZones(t *testing.T) {
	for _, params := range []string{
		"parseTime=true&loc=UTC&time_zone=%27%2B05%3A00%27",
		"parseTime=true&loc=Asia%2FKolkata&time_zone=%27-07%3A00%27",
		"parseTime=false&time_zone=%27%2B09%3A30%27",
	} {
		t.Run(params, func(t *testing.T) {
			t.Parallel()
			dsn := dbtest.MySQLDSN(t)
			if i := strings.IndexByte(dsn, '?'); i >= 0 {
				dsn = dsn[:i]
			}
			db := dbtest.OpenMySQLDSN(t, dsn+"?"+params)
			var tz string
			if err := db.QueryRowContext(context.Background(), "SELECT @@session.time_zone").Scan(&tz); err != nil {
				t.Fatal(err)
			}
			if tz == "SYSTEM" || tz == "+00:00" {
				t.Fatalf("session time_zone is %q: the DSN parameter did not apply", tz)
			}
			s := dbtest.NewStore(t, db)
			checkExpiries(t, s)
		})
	}
}

// TestMySQLCaseSensitiveIDs: ids differing only in case are distinct rows
// (ascii_bin collation), including on Load and Delete.
func TestCaseSensitiveIDs(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		lower := newRecord(t, s, now().Add(time.Hour), "v", "lower")
		lower.ID = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"
		upper := newRecord(t, s, now().Add(time.Hour), "v", "upper")
		upper.ID = core.ID(strings.ToUpper(string(lower.ID)))
		for _, r := range []*core.Record{lower, upper} {
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, upper.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx, lower.ID, now())
		if err != nil || got == nil || !bytes.Equal(got.Data["v"], lower.Data["v"]) {
			t.Fatalf("lower-case record after deleting the upper-case one: %v, %v", got, err)
		}
		if got, _ := s.Load(ctx, upper.ID, now()); got != nil {
			t.Fatal("upper-case record still loads")
		}
	})
}

// TestLargeValues: 1 MiB and 16 MiB values round-trip (MySQL: LONGBLOB, not
// a 64 KiB BLOB).
func TestLargeValues(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		for _, size := range []int{1 << 20, 8 << 20} {
			big := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			rec := newRecord(t, s, now().Add(time.Hour), "big", big)
			if err := s.Create(ctx, rec); err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			got, err := s.Load(ctx, rec.ID, now())
			if err != nil || got == nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			var back []byte
			if err := s.Codec().Unmarshal(got.Data["big"], &back); err != nil || !bytes.Equal(back, big) {
				t.Fatalf("%d bytes: value changed (%d bytes back, %v)", size, len(back), err)
			}
		}
	})
}

func TestCollisionRetriedBySession(t *testing.T) {
	// The conformance suite forces a collision through core.Session; here
	// the store reports it for an id that exists with any data and expiry.
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		rec := newRecord(t, s, now().Add(-time.Hour), "k", "v")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		dup := newRecord(t, s, now().Add(time.Hour))
		dup.ID = rec.ID
		if err := s.Create(ctx, dup); !errors.Is(err, core.ErrCollision) {
			t.Fatalf("got %v, want ErrCollision", err)
		}
		if dup.Version != 0 {
			t.Fatalf("a failed Create set version %d", dup.Version)
		}
	})
}

func TestDeleteExpiredBatches(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db, bunstore.WithDeleteBatchSize(7))
		ctx := context.Background()
		t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		fill(t, db, s, 50, t0.Add(-time.Minute))
		live := newRecord(t, s, t0.Add(time.Microsecond), "k", "v")
		if err := s.Create(ctx, live); err != nil {
			t.Fatal(err)
		}
		edge := newRecord(t, s, t0, "k", "v") // expiry == now: expired
		if err := s.Create(ctx, edge); err != nil {
			t.Fatal(err)
		}
		if n, err := s.DeleteExpired(ctx, t0, 10); n != 10 || err != nil {
			t.Fatalf("DeleteExpired(limit 10) = %d, %v", n, err)
		}
		if n, err := s.DeleteExpired(ctx, t0, 0); n != 41 || err != nil {
			t.Fatalf("DeleteExpired(all) = %d, %v; want 41", n, err)
		}
		if got, err := s.Load(ctx, live.ID, t0); got == nil || err != nil {
			t.Fatalf("live record: %v, %v", got, err)
		}
	})
}

// fill inserts n records expiring at exp (ids fill-<i>-<random>) in few
// statements: it creates one record through the store, then copies its row
// (so each dialect's own expiry encoding is used) with generate_series
// (PostgreSQL), a recursive CTE (SQLite) or UNION ALL chunks (MySQL).
func fill(t testing.TB, db *bun.DB, s *bunstore.Store, n int, exp time.Time) {
	t.Helper()
	ctx := context.Background()
	probe := newRecord(t, s, exp, "k", "v")
	probe.ID = core.ID("fill-0-" + string(newID(t)[:8]))
	if err := s.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}
	if n <= 1 {
		return
	}
	suffix := "-" + string(probe.ID[7:])
	var err error
	switch db.Dialect().Name() {
	case dialect.PG:
		_, err = db.ExecContext(ctx, "INSERT INTO ? (id, data, expiry_date, version) SELECT 'fill-' || g || ?, p.data, p.expiry_date, 1 FROM ? AS p, generate_series(1, ?) AS g WHERE p.id = ?",
			table(s), suffix, table(s), n-1, string(probe.ID))
	case dialect.SQLite:
		_, err = db.ExecContext(ctx, "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?) INSERT INTO ? (id, data, expiry_date, version) SELECT 'fill-' || g.i || ?, p.data, p.expiry_date, 1 FROM g, ? AS p WHERE p.id = ?",
			n-1, table(s), suffix, table(s), string(probe.ID))
	default:
		for i := 1; i < n && err == nil; i += 500 {
			var sb strings.Builder
			args := []any{table(s)}
			sb.WriteString("INSERT INTO ? (id, data, expiry_date, version) SELECT x.id, p.data, p.expiry_date, 1 FROM (")
			for j := i; j < min(n, i+500); j++ {
				if j > i {
					sb.WriteString(" UNION ALL ")
				}
				sb.WriteString("SELECT ? AS id")
				args = append(args, fmt.Sprintf("fill-%d%s", j, suffix))
			}
			sb.WriteString(") AS x, ? AS p WHERE p.id = ?")
			args = append(args, table(s), string(probe.ID))
			_, err = db.ExecContext(ctx, sb.String(), args...)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

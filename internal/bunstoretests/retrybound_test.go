package bunstoretests

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// badBudget makes the statements of badConns fail with driver.ErrBadConn,
// before anything is sent, while it lasts: what pgx reports for a
// connection it closed. left < 0 fails every statement.
type badBudget struct {
	left  atomic.Int64
	tries atomic.Int64 // statements attempted
	// after, when set, runs at each attempt (the test cancels a context in it).
	after func(try int64)
}

func (b *badBudget) fail() bool {
	try := b.tries.Add(1)
	if b.after != nil {
		b.after(try)
	}
	for {
		n := b.left.Load()
		switch {
		case n < 0:
			return true
		case n == 0:
			return false
		case b.left.CompareAndSwap(n, n-1):
			return true
		}
	}
}

// badConn is a pgx connection whose statements fail while b lasts.
type badConn struct {
	*stdlib.Conn
	b *badBudget
}

func (c badConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.b.fail() {
		return nil, driver.ErrBadConn
	}
	return c.Conn.ExecContext(ctx, query, args)
}

func (c badConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.b.fail() {
		return nil, driver.ErrBadConn
	}
	return c.Conn.QueryContext(ctx, query, args)
}

// TestRetryBound attacks what bunstore's package doc promises about
// driver.ErrBadConn: a statement that fails with it runs again up to the
// pool's MaxOpenConns + 1 times while its context lasts, and no more. On
// a pgx pool of 4 on PostgreSQL whose next k statements fail before being
// sent: a Load and a Save with one failure fewer than the bound succeed
// (the save lands once: the version grows by one); with as many as the
// bound, or with every statement failing, they fail with ErrBadConn after
// exactly the bound's attempts and write nothing; a context cancelled
// during the retries stops them at once; an unlimited pool (MaxOpenConns
// 0) gets 2 runs.
func TestRetryBound(t *testing.T) {
	dbtest.OpenPostgres(t) // skips, or fails under CI, if PostgreSQL is unreachable
	cfg, err := pgx.ParseConfig(dbtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	budget := &badBudget{}
	sqldb := sql.OpenDB(wrapConnector{stdlib.GetConnector(*cfg), func(c *stdlib.Conn) driver.Conn { return badConn{c, budget} }})
	t.Cleanup(func() { sqldb.Close() })
	const poolSize = 4
	sqldb.SetMaxOpenConns(poolSize)
	sqldb.SetMaxIdleConns(poolSize)
	db := bun.NewDB(sqldb, pgdialect.New())
	s := dbtest.NewStore(t, db)
	ctx := context.Background()

	// database/sql's own attempts per call: it retries ErrBadConn itself.
	budget.tries.Store(0)
	budget.left.Store(-1)
	if _, err := sqldb.ExecContext(ctx, "SELECT 1"); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("a call on a pool whose every statement fails: %v, want driver.ErrBadConn", err)
	}
	perCall := budget.tries.Load()
	t.Logf("database/sql runs a call %d times on ErrBadConn", perCall)
	bound := int64(poolSize+1) * perCall

	tok, err := core.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec := &core.Record{ID: tok.ID(), Data: map[string][]byte{"n": {1}}, Expiry: time.Now().Add(time.Hour)}
	budget.left.Store(0)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var version uint64

	// run sets the budget, runs op and returns its attempts and error.
	run := func(left int64, op func() error) (int64, error) {
		budget.tries.Store(0)
		budget.left.Store(left)
		err := op()
		n := budget.tries.Load()
		budget.left.Store(0)
		return n, err
	}
	load := func() error {
		got, err := s.Load(ctx, rec.ID, time.Now())
		if err == nil && (got == nil || got.Version != version) {
			return errors.New("loaded a record other than the one saved")
		}
		return err
	}
	save := func() error {
		r := *rec
		r.Version = version
		r.Data = map[string][]byte{"n": {byte(version)}}
		if err := s.Save(ctx, &r); err != nil {
			return err
		}
		version = r.Version
		return nil
	}
	stored := func() uint64 {
		t.Helper()
		got, err := s.Load(ctx, rec.ID, time.Now())
		if err != nil || got == nil {
			t.Fatalf("reading the record back: %v %v", got, err)
		}
		return got.Version
	}

	version = stored()

	for _, op := range []struct {
		name string
		f    func() error
	}{{"load", load}, {"save", save}} {
		t.Run(op.name+"/within", func(t *testing.T) {
			before := version
			tries, err := run(bound-1, op.f)
			if err != nil {
				t.Fatalf("%d statements failing (the bound %d less one): %v", bound-1, bound, err)
			}
			if tries != bound {
				t.Errorf("%d attempts, want %d (the last one succeeds)", tries, bound)
			}
			want := before
			if op.name == "save" {
				want++
			}
			if v := stored(); v != want || version != want {
				t.Errorf("version %d stored, %d returned after one operation from %d: want %d", v, version, before, want)
			}
		})
		for _, left := range []int64{bound, -1} {
			t.Run(op.name+"/beyond", func(t *testing.T) {
				before := version
				tries, err := run(left, op.f)
				if !errors.Is(err, driver.ErrBadConn) {
					t.Fatalf("%d statements failing: %v, want driver.ErrBadConn", left, err)
				}
				if tries != bound {
					t.Errorf("%d attempts, want the bound, %d", tries, bound)
				}
				if v := stored(); v != before {
					t.Errorf("version %d stored after a failed %s, want %d", v, op.name, before)
				}
			})
		}
	}

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		budget.after = func(try int64) {
			if try == perCall+1 { // the store's second run
				cancel()
			}
		}
		defer func() { budget.after = nil }()
		budget.tries.Store(0)
		budget.left.Store(-1)
		_, err := s.Load(cctx, rec.ID, time.Now())
		n := budget.tries.Load()
		budget.left.Store(0)
		if err == nil {
			t.Fatal("a load whose every statement failed succeeded")
		}
		if n > 2*perCall {
			t.Errorf("%d attempts after the context was cancelled in the second run, want at most %d", n, 2*perCall)
		}
	})

	t.Run("unlimited-pool", func(t *testing.T) {
		sqldb.SetMaxOpenConns(0)
		defer sqldb.SetMaxOpenConns(poolSize)
		tries, err := run(-1, load)
		if !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("%v, want driver.ErrBadConn", err)
		}
		if tries != 2*perCall {
			t.Errorf("%d attempts, want 2 runs of %d", tries, perCall)
		}
	})
}

package bunstoretests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/core/storetest"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// pgBouncerSetups are the driver settings bunstore's documentation gives
// for PgBouncer in transaction pooling mode.
var pgBouncerSetups = []struct {
	name, driver, params string
	opts                 []bunstore.Option
}{
	{"pgx-exec", "pgx", "default_query_exec_mode=exec", nil},
	{"pgx-simple-protocol", "pgx", "default_query_exec_mode=simple_protocol", nil},
	{"libpq-binary-parameters", "postgres", "binary_parameters=yes", []bunstore.Option{bunstore.WithPreparedStatements(false)}},
}

// TestPgBouncer runs the store conformance suite, then concurrent sessions,
// through a PgBouncer in transaction pooling mode (started by the test), with
// each documented driver setting. Migrate runs through it too.
func TestPgBouncer(t *testing.T) {
	for i, c := range pgBouncerSetups {
		t.Run(c.name, func(t *testing.T) {
			if i > 0 && testing.Short() {
				t.Skip("the other documented settings run without -short; -short keeps pgx's default_query_exec_mode=exec, the one README names")
			}
			t.Parallel()
			db := dbtest.OpenPostgresPgBouncer(t, c.driver, c.params)
			s := dbtest.NewStore(t, db, c.opts...)
			storetest.Run(t, func(*testing.T) core.Store { return s })
			t.Run("concurrent", func(t *testing.T) { concurrentCounters(t, s) })
		})
	}
}

// visitOnce increments a counter in the session token ("" for a new one)
// as one HTTP request would, and returns the session's token.
func visitOnce(ctx context.Context, s core.Store, token string) (string, error) {
	sess := core.NewSession(s, token, nil)
	if _, err := core.Update(ctx, sess, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
		return "", err
	}
	if _, err := sess.Commit(ctx); err != nil {
		return "", err
	}
	return sess.Token().String(), nil
}

// concurrentCounters has 20 clients increment counters in 200 requests, as
// the examples' visitors do: each client its own session, and all of them
// one shared session. Every request must succeed and every count be kept.
// Behind PgBouncer this is what exposes statements prepared on one server
// connection and run on another.
func concurrentCounters(t *testing.T, s core.Store) {
	ctx := context.Background()
	const clients, requests = 20, 10
	visit := func(token string) (string, error) { return visitOnce(ctx, s, token) }
	count := func(token string) int {
		sess := core.NewSession(s, token, nil)
		n, _, err := core.Get[int](ctx, sess, "n")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	shared, err := visit("")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*requests)
	own := make([]string, clients)
	for i := range clients {
		wg.Go(func() {
			for r := range requests {
				token := shared
				if r%2 == 1 {
					token = own[i]
				}
				got, err := visit(token)
				if err != nil {
					errs <- fmt.Errorf("client %d request %d: %w", i, r, err)
					continue
				}
				if token == "" {
					own[i] = got
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 5 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, clients*requests)
	}
	if got, want := count(shared), 1+clients*requests/2; got != want {
		t.Errorf("shared session counted %d, want %d", got, want)
	}
	for i, tok := range own {
		if got, want := count(tok), requests/2; got != want {
			t.Errorf("client %d's session counted %d, want %d", i, got, want)
		}
	}
}

// TestPgBouncerMigrateConcurrent migrates a schema that does not exist yet
// from 8 stores at once through PgBouncer: Migrate's advisory lock is
// transaction-level and taken inside Migrate's one transaction, so
// transaction pooling keeps it on one server connection.
func TestPgBouncerMigrateConcurrent(t *testing.T) {
	c := pgBouncerSetups[0]
	db := dbtest.OpenPostgresPgBouncer(t, c.driver, c.params)
	schema := dbtest.UniqueSchema(t, db)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			s, err := bunstore.New(db, bunstore.WithSchemaName(schema))
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
	checkUsable(t, db, schema)
}

func checkUsable(t *testing.T, db *bun.DB, schema string) {
	t.Helper()
	s, err := bunstore.New(db, bunstore.WithSchemaName(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	concurrentCounters(t, s)
}

// TestWhoPrepares: the store prepares its statements through database/sql
// unless the driver caches them itself (pgx) or WithPreparedStatements says
// otherwise.
func TestWhoPrepares(t *testing.T) {
	for _, c := range []struct {
		dialect string
		opts    []bunstore.Option
		want    bool
	}{
		{"postgres", nil, false},
		{"postgres", []bunstore.Option{bunstore.WithPreparedStatements(true)}, true},
		{"postgres-libpq", nil, true},
		{"postgres-libpq", []bunstore.Option{bunstore.WithPreparedStatements(false)}, false},
		{"mysql", nil, true},
		{"sqlite", nil, true},
	} {
		name := c.dialect + "/default"
		if len(c.opts) > 0 {
			name = fmt.Sprintf("%s/WithPreparedStatements(%v)", c.dialect, c.want)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var d dbtest.Dialect
			for _, x := range dbtest.Dialects() {
				if x.Name == c.dialect {
					d = x
				}
			}
			if d.OpenCounting == nil {
				t.Skipf("%s runs without -short", c.dialect)
			}
			var wire dbtest.Counter
			s := dbtest.NewStore(t, d.OpenCounting(t, &wire), c.opts...)
			ctx := context.Background()
			before := wire.Prepares()
			rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if got, err := s.Load(ctx, rec.ID, now()); err != nil || got == nil {
					t.Fatal(got, err)
				}
			}
			if got := wire.Prepares() - before; (got > 0) != c.want {
				t.Errorf("%d statements prepared through database/sql, want prepared: %v", got, c.want)
			}
		})
	}
}

package bunstoretests

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// validConn and validConnector are what RELIABILITY.md ("Requests
// cancelled on a pgx pool") gives for an application's own queries on a
// pgx pool: they let database/sql see that pgx closed a connection.
// TestValidatorSnippetDocumented checks that the snippet has their lines.
type validConn struct{ *stdlib.Conn }

func (c validConn) IsValid() bool { return !c.Conn.Conn().IsClosed() }

type validConnector struct{ driver.Connector }

func (c validConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return validConn{conn.(*stdlib.Conn)}, nil
}

// countingConn is pgx's connection as it is (no driver.Validator),
// counting the closed connections that database/sql hands to requests
// nobody cancelled: their ResetSession fails with driver.ErrBadConn.
type countingConn struct {
	*stdlib.Conn
	drawn *atomic.Int64
}

func (c countingConn) ResetSession(ctx context.Context) error {
	err := c.Conn.ResetSession(ctx)
	if errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil {
		c.drawn.Add(1)
	}
	return err
}

// wrapConnector opens pgx connections and wraps them (countingConn).
type wrapConnector struct {
	driver.Connector
	wrap func(*stdlib.Conn) driver.Conn
}

func (c wrapConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return c.wrap(conn.(*stdlib.Conn)), nil
}

// TestDeadConnectionsInPool: requests cancelled mid-statement (HTTP
// clients that go away) on a pgx database/sql pool of 8, directly on
// PostgreSQL with pgx's default configuration, beside requests that
// nobody cancels. pgx closes a connection whose statement its context
// interrupted and, implementing no driver.Validator, lets database/sql put
// it back into the pool; a request that draws three such connections in a
// row fails with "driver: bad connection".
//
// "pgx": the store's statements must not fail (bunstore's Store.again
// runs them again; "pgx-bun-hooks-prepared": so too through bun's query
// path and statements the store prepares), while the app's own queries on the same pool (SELECT
// 1) may. It runs until the store has served 40 requests and an app query
// has failed, or for 30 s; it fails if no request drew a closed
// connection (then pgx may have stopped returning them to the pool, and
// Store.again may go). "validating-connector": the same load as long
// again (3-10 s) on a pool opened through validConnector, where no query
// may fail; so also, for 5 s, on lib/pq and on MariaDB through
// go-sql-driver/mysql, whose drivers implement driver.Validator. In all,
// every session keeps each acknowledged increment.
func TestDeadConnectionsInPool(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of cancelled statements; skipped under -short")
	}
	dbtest.OpenPostgres(t) // skips, or fails under CI, if PostgreSQL is unreachable
	cfg, err := pgx.ParseConfig(dbtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	pgxConnector := stdlib.GetConnector(*cfg)
	open := func(t *testing.T, c driver.Connector) *bun.DB {
		sqldb := sql.OpenDB(c)
		t.Cleanup(func() { sqldb.Close() })
		if err := sqldb.Ping(); err != nil {
			t.Fatalf("PostgreSQL (%s): %v", dbtest.PostgresURL(), err)
		}
		return bun.NewDB(sqldb, pgdialect.New())
	}
	var took time.Duration
	// The store's two other ways of running a statement: through bun's
	// query path, and prepared by the store (database/sql's *sql.Stmt).
	for _, c := range []struct {
		name string
		opts []bunstore.Option
	}{
		{"pgx", nil},
		{"pgx-bun-hooks-prepared", []bunstore.Option{bunstore.WithBunQueryHooks(), bunstore.WithPreparedStatements(true)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var drawn atomic.Int64
			db := open(t, wrapConnector{pgxConnector, func(c *stdlib.Conn) driver.Conn { return countingConn{c, &drawn} }})
			st := deadConnLoad(t, db, func(st *deadConnStats, elapsed time.Duration) bool {
				return elapsed > 30*time.Second || st.storeFailed.Load() > 0 || st.appFailed.Load() > 0 && st.storeOK.Load() >= 40
			}, c.opts...)
			took = max(took, st.elapsed)
			t.Logf("requests nobody cancelled drew %d closed connections", drawn.Load())
			if n := st.storeFailed.Load(); n > 0 {
				t.Errorf("%d store requests nobody cancelled failed, the first with: %v", n, st.firstStoreErr.Load())
			}
			if drawn.Load() == 0 {
				t.Errorf("no request drew a closed connection in %v: the test no longer shows the hazard it guards against (does pgx's driver implement driver.Validator now? then bunstore's Store.again may go)", st.elapsed)
			}
		})
	}
	// The same load for d where no query may fail.
	noFailures := func(t *testing.T, db *bun.DB, d time.Duration) {
		st := deadConnLoad(t, db, func(st *deadConnStats, elapsed time.Duration) bool {
			return elapsed > d || st.storeFailed.Load() > 0 || st.appFailed.Load() > 0
		})
		if n := st.appFailed.Load() + st.storeFailed.Load(); n > 0 {
			t.Errorf("%d requests nobody cancelled failed, the first with: %v %v", n, st.firstAppErr.Load(), st.firstStoreErr.Load())
		}
	}
	t.Run("validating-connector", func(t *testing.T) {
		noFailures(t, open(t, validConnector{pgxConnector}), min(max(took, 3*time.Second), 10*time.Second))
	})
	// lib/pq and go-sql-driver/mysql implement driver.Validator.
	t.Run("lib-pq", func(t *testing.T) { noFailures(t, dbtest.OpenPostgresPQ(t), 5*time.Second) })
	t.Run("mysql", func(t *testing.T) { noFailures(t, dbtest.OpenMySQL(t), 5*time.Second) })
}

type deadConnStats struct {
	cancelled, appOK, appFailed, storeOK, storeFailed atomic.Int64
	firstAppErr, firstStoreErr                        atomic.Value
	elapsed                                           time.Duration
}

// deadConnLoad runs, on a pool of 8: 16 workers that each take a
// connection and sleep 10 ms on it in SQL, cancelled after
// 0.5-1.5 ms, 4 that run SELECT 1
// uncancelled (the app's own queries), and 12 that increment a counter in
// a session of their own through a store, uncancelled; until enough says
// so. Then it checks every session's counter against the increments
// acknowledged.
func deadConnLoad(t *testing.T, db *bun.DB, enough func(*deadConnStats, time.Duration) bool, opts ...bunstore.Option) *deadConnStats {
	t.Helper()
	db.DB.SetMaxOpenConns(8)
	db.DB.SetMaxIdleConns(8)
	s := dbtest.NewStore(t, db, opts...)
	sleep := "SELECT pg_sleep(0.01)"
	if db.Dialect().Name() == dialect.MySQL {
		sleep = "SELECT SLEEP(0.01)"
	}
	const victims, apps, stores = 16, 4, 12
	var (
		st   deadConnStats
		done atomic.Bool
		wg   sync.WaitGroup
	)
	for range victims {
		wg.Go(func() {
			for !done.Load() {
				conn, err := db.DB.Conn(context.Background())
				if err != nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(500+rand.IntN(1000))*time.Microsecond)
				_, _ = conn.ExecContext(ctx, sleep)
				cancel()
				conn.Close()
				st.cancelled.Add(1)
			}
		})
	}
	for range apps {
		wg.Go(func() {
			for !done.Load() {
				var one int
				if err := db.DB.QueryRowContext(context.Background(), "SELECT 1").Scan(&one); err != nil {
					st.appFailed.Add(1)
					st.firstAppErr.CompareAndSwap(nil, err.Error())
				} else {
					st.appOK.Add(1)
				}
			}
		})
	}
	type counter struct {
		token string
		acked int
	}
	counters := make([]counter, stores)
	for i := range stores {
		wg.Go(func() {
			c := &counters[i]
			for !done.Load() {
				token, err := visitOnce(context.Background(), s, c.token)
				if err != nil {
					st.storeFailed.Add(1)
					st.firstStoreErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if c.token != "" && token != c.token {
					t.Errorf("store worker %d: the session's token changed", i)
				}
				c.token = token
				c.acked++
				st.storeOK.Add(1)
			}
		})
	}
	start := time.Now()
	for !enough(&st, time.Since(start)) {
		time.Sleep(50 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	st.elapsed = time.Since(start).Round(time.Millisecond)
	t.Logf("%v: %d statements cancelled; app queries %d ok, %d failed (%v); store requests %d ok, %d failed",
		st.elapsed, st.cancelled.Load(), st.appOK.Load(), st.appFailed.Load(), st.firstAppErr.Load(), st.storeOK.Load(), st.storeFailed.Load())
	for i, c := range counters {
		if c.token == "" {
			t.Errorf("store worker %d: no request succeeded", i)
			continue
		}
		n, _, err := core.Get[int](context.Background(), core.NewSession(s, c.token, nil), "n")
		if err != nil {
			t.Fatal(err)
		}
		if n != c.acked {
			t.Errorf("store worker %d: counter %d after %d acknowledged increments", i, n, c.acked)
		}
	}
	return &st
}

// TestValidatorSnippetDocumented: the lines of validConn and
// validConnector are in RELIABILITY.md's snippet too, so that the
// documented connector stays the one TestDeadConnectionsInPool tests.
func TestValidatorSnippetDocumented(t *testing.T) {
	lines := []string{
		"type validConn struct{ *stdlib.Conn }",
		"func (c validConn) IsValid() bool { return !c.Conn.Conn().IsClosed() }",
		"type validConnector struct{ driver.Connector }",
		"func (c validConnector) Connect(ctx context.Context) (driver.Conn, error) {",
		"conn, err := c.Connector.Connect(ctx)",
		"return validConn{conn.(*stdlib.Conn)}, nil",
	}
	haveLines(t, lines, "deadconn_test.go", "../../RELIABILITY.md")
}

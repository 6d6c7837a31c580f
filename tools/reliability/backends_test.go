package reliability

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// faultBackend is a server database reached through a fault proxy.
type faultBackend struct {
	name   string
	proxy  *Proxy
	db     *bun.DB // through the proxy
	direct *bun.DB // straight to the server, for setup and inspection
	store  *bunstore.Store
}

// serverBackends are the databases that run behind a proxy.
var serverBackends = []string{"postgres", "mysql"}

// poolSize is the pool a real deployment of these tests would use: open and
// idle alike (prepared statements live on idle connections).
const poolSize = 8

// configurePool sets what a careful user sets: a bounded pool whose idle
// connections are kept (prepared statements), a lifetime so that connections
// are renewed now and then (e.g. after a failover), and an idle timeout.
func configurePool(db *sql.DB) {
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	db.SetConnMaxLifetime(5 * time.Minute)
	db.SetConnMaxIdleTime(time.Minute)
}

// openFault opens backend name (postgres or mysql) through a new proxy, with a
// migrated store in a fresh schema. A server that cannot be reached skips the
// test (or fails it under CI), as dbtest does.
func openFault(t testing.TB, name string, opts ...bunstore.Option) *faultBackend {
	t.Helper()
	fb := &faultBackend{name: name}
	var target string
	var open func(addr string) *bun.DB
	switch name {
	case "postgres":
		fb.direct = dbtest.OpenPostgres(t)
		u, err := url.Parse(dbtest.PostgresURL())
		if err != nil {
			t.Fatal(err)
		}
		target = u.Host
		if _, _, err := net.SplitHostPort(target); err != nil {
			target = net.JoinHostPort(target, "5432")
		}
		open = func(addr string) *bun.DB {
			v := *u
			v.Host = addr
			q := v.Query()
			q.Set("connect_timeout", "5")
			v.RawQuery = q.Encode()
			sqldb, err := sql.Open("pgx", v.String())
			if err != nil {
				t.Fatal(err)
			}
			return bun.NewDB(sqldb, pgdialect.New())
		}
	case "mysql":
		fb.direct = dbtest.OpenMySQL(t)
		cfg, err := mysql.ParseDSN(dbtest.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		target = cfg.Addr
		open = func(addr string) *bun.DB {
			c := cfg.Clone()
			c.Addr = addr
			c.Timeout = 5 * time.Second   // dial timeout
			c.Logger = &mysql.NopLogger{} // dropped connections are expected here
			sqldb, err := sql.Open("mysql", c.FormatDSN())
			if err != nil {
				t.Fatal(err)
			}
			return bun.NewDB(sqldb, mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
		}
	default:
		t.Fatalf("unknown backend %q", name)
	}
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	fb.proxy = p
	t.Cleanup(func() { p.Close() })
	schema := dbtest.UniqueSchema(t, fb.direct) // dropped over the direct pool
	fb.db = open(p.Addr())
	configurePool(fb.db.DB)
	t.Cleanup(func() { fb.db.Close() })
	fb.store, err = bunstore.New(fb.db, append([]bunstore.Option{bunstore.WithSchemaName(schema)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fb.store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fb.store.Migrate(ctx); err != nil {
		t.Fatalf("Migrate through the proxy: %v", err)
	}
	return fb
}

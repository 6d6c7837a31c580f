// Package dbtest opens the databases our tests run against and
// gives each test a fresh, uniquely named schema, database or file, so tests
// and parallel runs never collide. Other modules' tests import it too.
//
// Servers are found through environment variables:
//
//	SQLSESSIONS_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	SQLSESSIONS_MYSQL_URL     default root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC
//
// SQLSESSIONS_MYSQL_URL takes a go-sql-driver/mysql DSN or the URL form
// mysql://user:pass@host:port/db?params, converted by internal/dburl (with
// parseTime=true&loc=UTC), the one parser our examples and tools use too.
//
// A server that cannot be reached skips the test (t.Skip, with the reason),
// except when the environment variable CI is set: then the test fails, so CI
// never passes by skipping.
//
// SQLite needs no server: OpenSQLite opens a file in t.TempDir() with
// github.com/ncruces/go-sqlite3 (no cgo; the SQLite build is compiled into
// that module, nothing to download).
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"       // "mysql" driver
	_ "github.com/jackc/pgx/v5/stdlib"       // "pgx" driver
	_ "github.com/lib/pq"                    // "postgres" driver
	_ "github.com/ncruces/go-sqlite3/driver" // "sqlite3" driver
	"github.com/ncruces/go-sqlite3/vfs"
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// PoolSize is the number of connections each opened pool keeps, open and
// idle alike (prepared statements live on idle connections).
const PoolSize = 8

// PostgresURL returns the PostgreSQL server's URL: dburl.EnvPostgres
// (SQLSESSIONS_POSTGRES_URL), or dburl.DefaultPostgresURL.
func PostgresURL() string { return dburl.PostgresURLFromEnv() }

// MySQLDSN returns the MySQL server as a go-sql-driver/mysql DSN:
// dburl.EnvMySQL (SQLSESSIONS_MYSQL_URL, a DSN or a mysql:// URL that
// dburl.MySQLDSN converts), or dburl.DefaultMySQLDSN. A URL that does not
// convert fails the test.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn, err := dburl.MySQLDSNFromEnv()
	if err != nil {
		t.Fatalf("%s: %v", dburl.EnvMySQL, err)
	}
	return dsn
}

// noSockets is true where the program cannot dial a database server.
const noSockets = runtime.GOOS == "wasip1" || runtime.GOOS == "js"

// unreachable skips the test, or fails it under CI.
func unreachable(t testing.TB, what string, err error) {
	t.Helper()
	if noSockets {
		// WASI preview 1 and js/wasm cannot open TCP connections at all, so
		// no server is ever reachable there, CI or not.
		t.Skipf("%s: a %s module cannot open network connections, skipping", what, runtime.GOOS)
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not reachable (and CI is set, so this is a failure, not a skip): %v", what, err)
		return
	}
	t.Skipf("%s is not reachable, skipping (set CI=1 to make this a failure): %v", what, err)
}

func pool(t testing.TB, what, driverName, dsn string, size int) *sql.DB {
	t.Helper()
	return countingPool(t, what, driverName, dsn, size, nil)
}

// countingPool opens a pool; with a non-nil c, through a counting connector.
func countingPool(t testing.TB, what, driverName, dsn string, size int, c *Counter) *sql.DB {
	t.Helper()
	var sqldb *sql.DB
	var err error
	if c == nil {
		sqldb, err = sql.Open(driverName, dsn)
	} else {
		sqldb, err = countingDB(driverName, dsn, c)
	}
	if err != nil {
		t.Fatalf("opening %s: %v", what, err)
	}
	sqldb.SetMaxOpenConns(size)
	sqldb.SetMaxIdleConns(size)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		unreachable(t, what, err)
	}
	t.Cleanup(func() { sqldb.Close() })
	return sqldb
}

// OpenPostgres opens PostgresURL() with the pgx stdlib driver (closed when
// the test ends).
func OpenPostgres(t testing.TB) *bun.DB {
	t.Helper()
	return bun.NewDB(pool(t, "PostgreSQL ("+dburl.EnvPostgres+")", "pgx", PostgresURL(), PoolSize), pgdialect.New())
}

// OpenPostgresPQ opens PostgresURL() with the lib/pq driver.
func OpenPostgresPQ(t testing.TB) *bun.DB {
	t.Helper()
	return bun.NewDB(pool(t, "PostgreSQL ("+dburl.EnvPostgres+")", "postgres", PostgresURL(), PoolSize), pgdialect.New())
}

// OpenPostgresParams opens PostgresURL() with driverName ("pgx", or
// "postgres" for lib/pq) and params added to the URL's query (e.g.
// "binary_parameters=yes").
func OpenPostgresParams(t testing.TB, driverName, params string) *bun.DB {
	t.Helper()
	return bun.NewDB(pool(t, "PostgreSQL ("+dburl.EnvPostgres+")", driverName, withParams(PostgresURL(), params), PoolSize), pgdialect.New())
}

// withParams adds params (k=v&...) to the query of URL u.
func withParams(u, params string) string {
	switch {
	case params == "":
		return u
	case strings.Contains(u, "?"):
		return u + "&" + params
	default:
		return u + "?" + params
	}
}

// OpenPostgresDatabase creates a new, uniquely named PostgreSQL database,
// opens it with pgx, and drops it when the test ends. Use it to test
// defaults (such as the tower_sessions schema) that a shared database would
// share between runs.
func OpenPostgresDatabase(t testing.TB) *bun.DB {
	t.Helper()
	admin := OpenPostgres(t)
	name := UniqueName()
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE ?", bun.Ident(name)); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS ? WITH (FORCE)", bun.Ident(name)); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		t.Fatalf("parsing %s: %v", dburl.EnvPostgres, err)
	}
	u.Path = "/" + name
	// Registered after the DROP, so it runs (closing the pool) before it.
	return bun.NewDB(pool(t, "PostgreSQL database "+name, "pgx", u.String(), PoolSize), pgdialect.New())
}

// OpenMySQL opens MySQLDSN().
func OpenMySQL(t testing.TB) *bun.DB {
	t.Helper()
	return OpenMySQLDSN(t, MySQLDSN(t))
}

// OpenMySQLDSN opens a go-sql-driver/mysql DSN (e.g. MySQLDSN() with extra
// parameters).
func OpenMySQLDSN(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	return bun.NewDB(pool(t, "MySQL ("+dburl.EnvMySQL+")", "mysql", dsn, PoolSize), mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
}

// SQLiteDSN returns the DSN OpenSQLite uses for the file at path: WAL,
// synchronous=NORMAL and a 10 s busy timeout.
func SQLiteDSN(path string) string {
	if !vfs.SupportsFileLocking {
		// wasip1 and js builds have no file locks: SQLite refuses WAL
		// without them, and only one connection may use the file.
		return "file:" + path + "?nolock=1&_pragma=busy_timeout(10000)"
	}
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)"
}

// sqlitePoolSize is 4 connections, or 1 where files cannot be locked.
var sqlitePoolSize = map[bool]int{true: 4, false: 1}[vfs.SupportsFileLocking]

// OpenSQLite opens a new SQLite database file in t.TempDir() with the
// ncruces/go-sqlite3 driver and 4 connections.
func OpenSQLite(t testing.TB) *bun.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessions.db")
	return bun.NewDB(pool(t, "SQLite", "sqlite3", SQLiteDSN(path), sqlitePoolSize), sqlitedialect.New())
}

// UniqueName returns a fresh lower-case identifier, e.g. for a schema.
func UniqueName() string {
	var b [8]byte
	rand.Read(b[:])
	return "sqlsessions_test_" + hex.EncodeToString(b[:])
}

// UniqueSchema returns a fresh schema (PostgreSQL) or database (MySQL) name
// that does not exist yet, and drops whatever has that name when the test
// ends. On SQLite, which has no schemas, it returns "".
func UniqueSchema(t testing.TB, db *bun.DB) string {
	t.Helper()
	var drop string
	switch db.Dialect().Name() {
	case dialect.PG:
		drop = "DROP SCHEMA IF EXISTS ? CASCADE"
	case dialect.MySQL:
		drop = "DROP DATABASE IF EXISTS ?"
	default:
		return ""
	}
	name := UniqueName()
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), drop, bun.Ident(name)); err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
		}
	})
	return name
}

// NewStore returns a migrated store on db in a fresh schema (PostgreSQL,
// MySQL; options given later override it), closed when the test ends.
func NewStore(t testing.TB, db *bun.DB, opts ...bunstore.Option) *bunstore.Store {
	t.Helper()
	if schema := UniqueSchema(t, db); schema != "" {
		opts = append([]bunstore.Option{bunstore.WithSchemaName(schema)}, opts...)
	}
	s, err := bunstore.New(db, opts...)
	if err != nil {
		t.Fatalf("bunstore.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// Dialect names a database to test against and how to open it.
type Dialect struct {
	// Name is a subtest name: "postgres", "postgres-libpq", "mysql" or
	// "sqlite".
	Name string
	// Open opens a pool for the test (closed when it ends).
	Open func(testing.TB) *bun.DB
	// OpenCounting opens the same kind of pool, counting every statement
	// it sends into c.
	OpenCounting func(t testing.TB, c *Counter) *bun.DB
}

// Dialects lists every database bunstore supports, with the drivers it is
// tested with. Under -short (the README's fast loop) the second PostgreSQL
// driver, lib/pq, is left out: it runs every PostgreSQL test a second time,
// and .ci/run's long run keeps it.
func Dialects() []Dialect {
	all := allDialects()
	if !testing.Short() {
		return all
	}
	short := all[:0]
	for _, d := range all {
		if d.Name != "postgres-libpq" {
			short = append(short, d)
		}
	}
	return short
}

func allDialects() []Dialect {
	return []Dialect{
		{"postgres", OpenPostgres, func(t testing.TB, c *Counter) *bun.DB {
			return bun.NewDB(countingPool(t, "PostgreSQL ("+dburl.EnvPostgres+")", "pgx", PostgresURL(), PoolSize, c), pgdialect.New())
		}},
		{"postgres-libpq", OpenPostgresPQ, func(t testing.TB, c *Counter) *bun.DB {
			return bun.NewDB(countingPool(t, "PostgreSQL ("+dburl.EnvPostgres+")", "postgres", PostgresURL(), PoolSize, c), pgdialect.New())
		}},
		{"mysql", OpenMySQL, func(t testing.TB, c *Counter) *bun.DB {
			return bun.NewDB(countingPool(t, "MySQL ("+dburl.EnvMySQL+")", "mysql", MySQLDSN(t), PoolSize, c), mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
		}},
		{"sqlite", OpenSQLite, func(t testing.TB, c *Counter) *bun.DB {
			path := filepath.Join(t.TempDir(), "sessions.db")
			return bun.NewDB(countingPool(t, "SQLite", "sqlite3", SQLiteDSN(path), sqlitePoolSize, c), sqlitedialect.New())
		}},
	}
}

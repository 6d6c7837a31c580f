package exampletest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // "mysql" driver
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver

	"github.com/sqlsessions/sqlsessions/internal/dburl"
)

// unreachable skips the test, or fails it when CI is set.
func unreachable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not reachable (CI is set, so this fails instead of skipping): %v", what, err)
	}
	t.Skipf("%s is not reachable, skipping (set CI=1 to make this a failure): %v", what, err)
}

func ping(t testing.TB, what, driverName, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		unreachable(t, what, err)
	}
	return db
}

// PostgresURL creates a fresh, uniquely named database on the PostgreSQL
// server of SQLSESSIONS_POSTGRES_URL, drops it when the test ends, and
// returns its URL. The example can then use its default tower_sessions
// schema without meeting other runs.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := dburl.PostgresURLFromEnv()
	admin := ping(t, "PostgreSQL ("+dburl.EnvPostgres+")", "pgx", base)
	var b [6]byte
	rand.Read(b[:])
	name := "sqlsessions_example_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		admin.Close()
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", dburl.EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MySQLURL returns SQLSESSIONS_MYSQL_URL as a mysql:// URL (converting a
// go-sql-driver DSN), after checking that the server answers. The examples
// use the server-wide tower_sessions database; concurrent runs share it
// harmlessly, since every session has its own random id.
func MySQLURL(t testing.TB) string {
	t.Helper()
	raw := dburl.MySQLFromEnv()
	if k, err := dburl.KindOf(raw); err != nil || k != dburl.MySQL {
		if raw, err = dburl.MySQLURLFromDSN(raw); err != nil {
			t.Fatalf("%s is neither a mysql:// URL nor a DSN: %v", dburl.EnvMySQL, err)
		}
	}
	dsn, err := dburl.MySQLDSN(raw)
	if err != nil {
		t.Fatalf("%s: %v", dburl.EnvMySQL, err)
	}
	ping(t, fmt.Sprintf("MySQL (%s)", dburl.EnvMySQL), "mysql", dsn).Close()
	return raw
}

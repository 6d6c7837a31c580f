package exampletest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver

	"github.com/sqlsessions/sqlsessions/examples/internal/exampleutil"
)

// Environment variables naming the test servers, and their defaults.
const (
	EnvPostgres     = "SQLSESSIONS_POSTGRES_URL"
	EnvMySQL        = "SQLSESSIONS_MYSQL_URL"
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQL    = "mysql://root@127.0.0.1:3306/test"
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
	base := os.Getenv(EnvPostgres)
	if base == "" {
		base = DefaultPostgres
	}
	admin := ping(t, "PostgreSQL ("+EnvPostgres+")", "pgx", base)
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
		t.Fatalf("%s: %v", EnvPostgres, err)
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
	raw := os.Getenv(EnvMySQL)
	if raw == "" {
		raw = DefaultMySQL
	}
	if !strings.HasPrefix(raw, "mysql://") {
		cfg, err := mysql.ParseDSN(raw)
		if err != nil {
			t.Fatalf("%s is neither a mysql:// URL nor a DSN: %v", EnvMySQL, err)
		}
		u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
		if cfg.Passwd != "" {
			u.User = url.UserPassword(cfg.User, cfg.Passwd)
		} else if cfg.User != "" {
			u.User = url.User(cfg.User)
		}
		raw = u.String()
	}
	dsn, err := exampleutil.MySQLDSN(raw)
	if err != nil {
		t.Fatalf("%s: %v", EnvMySQL, err)
	}
	ping(t, fmt.Sprintf("MySQL (%s)", EnvMySQL), "mysql", dsn).Close()
	return raw
}

// Command sessionsoak runs the sqlsessions soak workload for as long as you
// like on PostgreSQL, MariaDB/MySQL and SQLite: mixed traffic (new sessions,
// reads, counter increments, concurrent writes of distinct keys on one
// session, CycleID, Flush) through the httpadapter middleware and bunstore,
// with every answer checked against what the client stored. It prints
// requests, errors and invariant violations per backend and exits 1 unless
// both are zero. The short version runs in go test (tools/reliability).
//
//	go run ./cmd/sessionsoak -duration 5m -backends postgres,mysql,sqlite
//
// Each server backend gets a fresh schema (database on MySQL), dropped at the
// end; SQLite gets a file in a temporary directory.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/sqlsessions/sqlsessions/tools/reliability"
)

func main() {
	duration := flag.Duration("duration", 2*time.Minute, "traffic duration per backend")
	backends := flag.String("backends", "postgres,mysql,sqlite", "comma-separated backends: postgres, mysql, sqlite")
	clients := flag.Int("clients", 8, "concurrent clients")
	parallel := flag.Int("parallel", 4, "concurrent requests per session when writing distinct keys")
	pgURL := flag.String("postgres", dburl.PostgresURLFromEnv(), "PostgreSQL URL (default from "+dburl.EnvPostgres+")")
	myURL := flag.String("mysql", dburl.MySQLFromEnv(), "MySQL DSN or mysql:// URL (default from "+dburl.EnvMySQL+")")
	pool := flag.Int("pool", 16, "connection pool size (open and idle) for the server backends")
	flag.Parse()
	myDSN, err := dburl.NormalizeMySQL(*myURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--mysql: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	failed := false
	for _, name := range strings.Split(*backends, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		rep, err := soak(ctx, name, *pgURL, myDSN, *pool, logger, reliability.SoakOptions{
			Clients: *clients, Duration: *duration, Parallel: *parallel,
			Log: func(format string, args ...any) { logger.Warn(fmt.Sprintf(format, args...), "backend", name) },
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Printf("%-8s %v\n", name, rep)
		for _, s := range rep.Samples {
			fmt.Printf("         %s\n", s)
		}
		if rep.Errors != 0 || rep.Violations != 0 {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func soak(ctx context.Context, name, pgURL, myDSN string, pool int, logger *slog.Logger, opts reliability.SoakOptions) (reliability.SoakReport, error) {
	var db *bun.DB
	var drop string
	switch name {
	case "postgres":
		sqldb, err := sql.Open("pgx", pgURL)
		if err != nil {
			return reliability.SoakReport{}, err
		}
		db, drop = bun.NewDB(sqldb, pgdialect.New()), "DROP SCHEMA IF EXISTS ? CASCADE"
	case "mysql":
		sqldb, err := sql.Open("mysql", myDSN)
		if err != nil {
			return reliability.SoakReport{}, err
		}
		db, drop = bun.NewDB(sqldb, mysqldialect.New(mysqldialect.WithTimeLocation("UTC"))), "DROP DATABASE IF EXISTS ?"
	case "sqlite":
		dir, err := os.MkdirTemp("", "sessionsoak")
		if err != nil {
			return reliability.SoakReport{}, err
		}
		defer os.RemoveAll(dir)
		if db, err = sqlitewasm.Open(filepath.Join(dir, "soak.db")); err != nil {
			return reliability.SoakReport{}, err
		}
	default:
		return reliability.SoakReport{}, fmt.Errorf("unknown backend %q (want postgres, mysql or sqlite)", name)
	}
	defer db.Close()
	var sopts []bunstore.Option
	if drop != "" {
		db.SetMaxOpenConns(pool)
		db.SetMaxIdleConns(pool)
		db.SetConnMaxLifetime(5 * time.Minute)
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "soak_" + hex.EncodeToString(b[:])
		sopts = append(sopts, bunstore.WithSchemaName(schema))
		defer func() {
			if _, err := db.ExecContext(context.Background(), drop, bun.Ident(schema)); err != nil {
				logger.Error("dropping the soak schema", "schema", schema, "error", err)
			}
		}()
	}
	store, err := bunstore.New(db, append(sopts, bunstore.WithLogger(logger))...)
	if err != nil {
		return reliability.SoakReport{}, err
	}
	defer store.Close()
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := store.Migrate(mctx); err != nil {
		return reliability.SoakReport{}, fmt.Errorf("migrate: %w", err)
	}
	m, err := httpadapter.New(store, httpadapter.WithExpiry(core.OnInactivity(time.Hour)), httpadapter.WithLogger(logger))
	if err != nil {
		return reliability.SoakReport{}, err
	}
	return reliability.Soak(ctx, m, opts), nil
}

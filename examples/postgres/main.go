// Command postgres is the seed's PostgreSQL example: a page that counts your
// visits, kept in a session stored in PostgreSQL.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/test go run ./postgres
//	curl -c jar -b jar http://127.0.0.1:3000/   # Current count: 0, 1, 2, ...
//
// DATABASE_URL is required; ADDR changes the listen address (default
// 127.0.0.1:3000). Sessions expire after 10 seconds of inactivity; expired
// rows are deleted every minute. Ctrl-C or SIGTERM shuts down gracefully.
// Behind PgBouncer in transaction pooling mode, add
// default_query_exec_mode=exec to DATABASE_URL, and use PgBouncer 1.20 or
// later: older ones can exit on the cancel requests pgx sends when a
// request is cancelled (docs/many-instances.md, "PgBouncer").
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/examples/internal/exampleutil"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
)

const counterKey = "counter"

func main() {
	exampleutil.Main("postgres example", run)
}

func run(ctx context.Context) error {
	databaseURL, err := exampleutil.RequireEnv("DATABASE_URL", "postgres://postgres:password@127.0.0.1:5432/postgres")
	if err != nil {
		return err
	}
	if err := dburl.CheckPostgresURL(databaseURL); err != nil {
		return err
	}
	sqldb, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer sqldb.Close()
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10) // keep the store's prepared statements alive
	if err := exampleutil.Ping(ctx, sqldb); err != nil {
		return err
	}
	db := bun.NewDB(sqldb, pgdialect.New())

	store, err := bunstore.New(db)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	sessions, err := httpadapter.New(store,
		httpadapter.WithSecure(false), // plain http://127.0.0.1 for the demo
		httpadapter.WithExpiry(core.OnInactivity(10*time.Second)),
	)
	if err != nil {
		return err
	}

	return exampleutil.Serve(ctx, exampleutil.Server{
		Addr:    exampleutil.Addr(),
		Handler: sessions.Middleware(http.HandlerFunc(handler)),
		Background: []func(context.Context) error{
			func(ctx context.Context) error { return store.ContinuouslyDeleteExpired(ctx, 60*time.Second) },
		},
		Log: os.Stdout,
	})
}

// handler shows the visit count and counts this visit.
func handler(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	session := httpadapter.FromContext(ctx)
	// An atomic read-modify-write: concurrent visits never lose a count.
	next, err := core.Update(ctx, session, counterKey, func(count int, _ bool) (int, error) { return count + 1, nil })
	if err != nil {
		slog.ErrorContext(ctx, "counter session", "err", err)
		http.Error(w, "session unavailable", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "Current count: %d", next-1) // the count before this visit
}

package pgnotify_test

import (
	"context"
	"database/sql"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// One instance of an application that runs several: the pool may go
// through PgBouncer, the listener connects to PostgreSQL directly.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// DATABASE_URL may go through PgBouncer (in transaction mode on
	// bunstore's terms: see its package documentation);
	// DIRECT_DATABASE_URL must reach PostgreSQL itself.
	sqldb, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10)
	store, err := bunstore.New(bun.NewDB(sqldb, pgdialect.New()))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	go store.ContinuouslyDeleteExpired(ctx, time.Minute)

	// Entries live one second (TTL) without the feed, one minute
	// (FeedTTL) while the listener listens.
	cache := core.NewCachingStore(store, core.CachingOptions{})
	listener, err := pgnotify.New(os.Getenv("DIRECT_DATABASE_URL"), cache, pgnotify.Options{})
	if err != nil {
		log.Fatal(err)
	}
	go listener.Run(ctx) // installs the triggers, listens, reconnects until ctx ends

	sessions, err := httpadapter.New(cache)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		// Every other instance refuses this session within milliseconds.
		if err := httpadapter.FromContext(r.Context()).Flush(r.Context()); err != nil {
			http.Error(w, "session unavailable", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !listener.Listening() {
			w.Write([]byte("ready; the cache falls back to its TTL\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Addr: ":8080", Handler: sessions.Middleware(mux)}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// Sessions written at most requests, on several instances: the feed of
// deletions only. Log-outs, CycleID and revocations still reach every
// instance within milliseconds; saves send no notification, and a value
// saved on another instance is read here within the cache's TTL.
func ExampleOptions_deletesOnly() {
	ctx := context.Background()
	sqldb, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := bunstore.New(bun.NewDB(sqldb, pgdialect.New()))
	if err != nil {
		log.Fatal(err)
	}
	cache := core.NewCachingStore(store, core.CachingOptions{TTL: time.Second})
	listener, err := pgnotify.New(os.Getenv("DIRECT_DATABASE_URL"), cache, pgnotify.Options{DeletesOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	go listener.Run(ctx) // installs the DELETE and TRUNCATE triggers (InstallDeletes), listens, reconnects
	sessions, err := httpadapter.New(cache)
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions // sessions.Middleware(...), as in the package example
}

// Command quickstart is the program README.md shows first, kept here so
// that it compiles: readme_test.go fails when the two differ.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

func main() {
	ctx := context.Background()
	db, err := sqlitewasm.Open("sqlite://sessions.db") // or bun.NewDB(yourSQLDB, pgdialect.New())
	if err != nil {
		log.Fatal(err)
	}
	store, err := bunstore.New(db) // table tower_sessions (SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	go store.ContinuouslyDeleteExpired(ctx, time.Minute)

	sessions, err := httpadapter.New(store,
		httpadapter.WithSecure(false), // plain http on 127.0.0.1; keep Secure cookies behind HTTPS
		httpadapter.WithExpiry(core.OnInactivity(10*time.Second)))
	if err != nil {
		log.Fatal(err)
	}

	log.Fatal(http.ListenAndServe("127.0.0.1:3000", sessions.Middleware(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			s := httpadapter.FromContext(r.Context())
			// Atomic: concurrent requests never lose an increment.
			next, err := core.Update(r.Context(), s, "counter", func(n int, _ bool) (int, error) { return n + 1, nil })
			if err != nil {
				http.Error(w, "session unavailable", 500)
				return
			}
			fmt.Fprintf(w, "Current count: %d", next-1)
		}))))
}

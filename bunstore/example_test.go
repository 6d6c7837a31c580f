// These examples take the application's own pool; they compile without a
// database driver (bunstore's go.mod lists none) and are not run. Runnable
// ones, on SQLite, are in the sqlitewasm module; the tests against
// PostgreSQL, MariaDB and SQLite are in internal/bunstoretests.

package bunstore_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"os"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// A store on the application's PostgreSQL pool: create the table at
// start-up, purge expired sessions in the background, and hand the store to
// the middleware (httpadapter.New(store)).
func Example() {
	// The driver is the application's: import _ "github.com/jackc/pgx/v5/stdlib"
	// (driver "pgx") or _ "github.com/lib/pq" (driver "postgres").
	sqldb, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer sqldb.Close()
	// Prepared statements live on idle connections: keep them all.
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10)
	db := bun.NewDB(sqldb, pgdialect.New())

	ctx := context.Background()
	store, err := bunstore.New(db) // table tower_sessions.session
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	go store.ContinuouslyDeleteExpired(ctx, time.Minute)

	// A request without a cookie starts a session...
	sess := core.NewSession(store, "", nil)
	if err := sess.Insert(ctx, "user", "ada"); err != nil {
		log.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	// ...and the next one presents its token.
	next := core.NewSession(store, sess.Token().String(), nil)
	user, ok, err := core.Get[string](ctx, next, "user")
	log.Println(user, ok, err) // ada true <nil>
}

// MySQL and MariaDB: parseTime=true&loc=UTC in the DSN, and bun's dialect in
// UTC too, for the application's own queries on the table.
func Example_mySQL() {
	// import _ "github.com/go-sql-driver/mysql"
	sqldb, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true&loc=UTC")
	if err != nil {
		log.Fatal(err)
	}
	defer sqldb.Close()
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10)
	db := bun.NewDB(sqldb, mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))

	store, err := bunstore.New(db, bunstore.WithSchemaName("app")) // table app.session
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Names are validated when the store is built: anything but a plain
// identifier is an error, and no SQL is ever built from it. New does not
// contact the database.
func ExampleWithTableName() {
	sqldb, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	db := bun.NewDB(sqldb, pgdialect.New())

	_, err = bunstore.New(db, bunstore.WithTableName("sessions; DROP TABLE users"))
	log.Println(errors.Is(err, bunstore.ErrInvalidName)) // true

	store, err := bunstore.New(db, bunstore.WithSchemaName("web"), bunstore.WithTableName("sessions"))
	if err != nil {
		log.Fatal(err)
	}
	log.Println(store.SchemaName(), store.TableName()) // web sessions
}

// Purge expired sessions in the background until shutdown: the deletion
// stops when ctx ends, e.g. at SIGTERM.
func ExampleStore_ContinuouslyDeleteExpired() {
	sqldb, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := bunstore.New(bun.NewDB(sqldb, pgdialect.New()))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx, stop := context.WithCancel(context.Background()) // in a server: signal.NotifyContext
	defer stop()
	done := make(chan error, 1)
	go func() { done <- store.ContinuouslyDeleteExpired(ctx, time.Minute) }()

	// ... serve until shutdown, then:
	stop()
	log.Println(<-done) // context canceled
}

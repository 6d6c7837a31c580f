// bunstore's runnable examples live here: they need an SQLite driver,
// which bunstore's go.mod does not list, and sqlitewasm opens one ready for
// a session store (WAL where files can be locked, a single connection on
// wasip1 and js otherwise).

package sqlitewasm_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
)

// exampleDB opens a session database file in a fresh temporary directory;
// done closes it and removes the directory.
func exampleDB() (db *bun.DB, done func()) {
	dir, err := os.MkdirTemp("", "bunstore-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sqlitewasm.Open("sqlite://" + filepath.Join(dir, "sessions.db"))
	if err != nil {
		os.RemoveAll(dir)
		log.Fatal(err)
	}
	return db, func() {
		db.Close()
		os.RemoveAll(dir)
	}
}

// A bunstore session store in an SQLite file: create the table, start a session in
// one request and read it back in the next.
func Example_sessionStore() {
	db, done := exampleDB()
	defer done()

	ctx := context.Background()
	store, err := bunstore.New(db) // table "tower_sessions"
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	// First request: no cookie yet.
	sess := core.NewSession(store, "", nil)
	if err := sess.Insert(ctx, "user", "ada"); err != nil {
		log.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	token := sess.Token().String() // what the cookie carries

	// Next request presents the token.
	next := core.NewSession(store, token, nil)
	user, ok, err := core.Get[string](ctx, next, "user")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(user, ok)
	// Output: ada true
}

// bunstore.WithTableName: names are validated when the store is built: anything but a plain
// identifier is an error, and no SQL is ever built from it.
func Example_tableName() {
	db, done := exampleDB()
	defer done()

	_, err := bunstore.New(db, bunstore.WithTableName("sessions; DROP TABLE users"))
	fmt.Println(errors.Is(err, bunstore.ErrInvalidName))

	store, err := bunstore.New(db, bunstore.WithTableName("web_sessions"))
	fmt.Println(store.TableName(), err)
	// Output:
	// true
	// web_sessions <nil>
}

// Expired sessions are never loaded, and bunstore's DeleteExpired removes
// them.
func Example_deleteExpired() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store, err := bunstore.New(db)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	now := time.Now().UTC()
	for i, expiry := range []time.Time{now.Add(-time.Minute), now.Add(-time.Second), now.Add(time.Hour)} {
		tok, _ := core.NewToken(nil)
		v, _ := store.Codec().Marshal(i)
		rec := &core.Record{ID: tok.ID(), Data: map[string][]byte{"i": v}, Expiry: expiry}
		if err := store.Create(ctx, rec); err != nil {
			log.Fatal(err)
		}
	}
	n, err := store.DeleteExpired(ctx, now, 0)
	fmt.Println(n, err)
	// Output: 2 <nil>
}

// Purge expired sessions in the background until shutdown
// (bunstore.Store.ContinuouslyDeleteExpired).
func Example_continuouslyDeleteExpired() {
	db, done := exampleDB()
	defer done()
	store, err := bunstore.New(db)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// In a server: ctx from signal.NotifyContext, cancelled on shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error)
	go func() { stopped <- store.ContinuouslyDeleteExpired(ctx, time.Hour) }()
	fmt.Println(<-stopped)
	// Output: context deadline exceeded
}

// Two requests of one browser change the same session at the same time: the
// one that saves second collides with the first. Both changes survive. With
// core's CachingStore in front, the second replays on the cached winner
// instead of reading it back from the database.
func Example_concurrentRequests() {
	db, done := exampleDB()
	defer done()

	ctx := context.Background()
	sqlStore, err := bunstore.New(db)
	if err != nil {
		log.Fatal(err)
	}
	defer sqlStore.Close()
	if err := sqlStore.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	store := core.NewCachingStore(sqlStore, core.CachingOptions{})
	first := core.NewSession(store, "", nil)
	if err := first.Insert(ctx, "theme", "dark"); err != nil {
		log.Fatal(err)
	}
	if _, err := first.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	token := first.Token().String()

	// Both requests read the session before either saves.
	cart, lang := core.NewSession(store, token, nil), core.NewSession(store, token, nil)
	if err := cart.Insert(ctx, "cart", []string{"book"}); err != nil {
		log.Fatal(err)
	}
	if err := lang.Insert(ctx, "lang", "fr"); err != nil {
		log.Fatal(err)
	}
	for _, s := range []*core.Session{cart, lang} {
		if _, err := s.Commit(ctx); err != nil {
			log.Fatal(err)
		}
	}

	keys, err := core.NewSession(store, token, nil).Keys(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)
	// Output: [cart lang theme]
}

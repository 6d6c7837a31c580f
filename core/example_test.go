package core_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// A request's Session is lazy: it loads on first use and Commit writes it
// only if something changed.
func Example() {
	ctx := context.Background()
	store := core.NewMemoryStore()
	opts := &core.Options{Expiry: core.OnInactivity(30 * time.Minute)}

	// First request: no cookie yet.
	sess := core.NewSession(store, "", opts)
	if err := sess.Insert(ctx, "user", "ada"); err != nil {
		panic(err)
	}
	res, err := sess.Commit(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("first request:", res)
	cookie := sess.Token().String() // what the Set-Cookie header carries

	// Second request: the client sends the cookie back.
	sess = core.NewSession(store, cookie, opts)
	user, ok, err := core.Get[string](ctx, sess, "user")
	if err != nil {
		panic(err)
	}
	res, _ = sess.Commit(ctx)
	fmt.Println("second request:", user, ok, res)
	// Output:
	// first request: saved
	// second request: ada true unchanged
}

// CycleID gives a session a new token at log-in, so a token planted before
// log-in (session fixation) is worthless afterwards.
func ExampleSession_CycleID() {
	ctx := context.Background()
	store := core.NewMemoryStore()
	sess := core.NewSession(store, "", nil)
	_ = sess.Insert(ctx, "cart", []string{"book"})
	_, _ = sess.Commit(ctx)
	before := sess.Token().String()

	login := core.NewSession(store, before, nil)
	_ = login.CycleID(ctx)
	_ = login.Insert(ctx, "user", "ada")
	_, _ = login.Commit(ctx)

	old := core.NewSession(store, before, nil)
	empty, _ := old.IsEmpty(ctx)
	cart, _, _ := core.Get[[]string](ctx, core.NewSession(store, login.Token().String(), nil), "cart")
	fmt.Println("old token empty:", empty, "- cart kept:", cart)
	// Output: old token empty: true - cart kept: [book]
}

// DeleteExpiredEvery runs until its context ends; run it in a goroutine next
// to the server and cancel it on shutdown.
func ExampleDeleteExpiredEvery() {
	ctx, cancel := context.WithCancel(context.Background())
	store := core.NewMemoryStore()
	done := make(chan error, 1)
	go func() { done <- core.DeleteExpiredEvery(ctx, store, time.Minute, core.CleanupOptions{}) }()
	// ... serve requests ...
	cancel()
	fmt.Println(<-done)
	// Output: context canceled
}

package sqlitewasm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/core/storetest"
)

func newStore(t *testing.T, db *bun.DB) *bunstore.Store {
	t.Helper()
	store, err := bunstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

// TestBunstoreConformance runs the core store conformance suite on bunstore
// over databases opened by sqlitewasm, in memory and in a file.
func TestBunstoreConformance(t *testing.T) {
	for name, dsn := range map[string]string{
		"memory": "sqlite::memory:",
		"file":   "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "conformance.db")),
	} {
		t.Run(name, func(t *testing.T) {
			store := newStore(t, mustOpen(t, dsn))
			storetest.Run(t, func(t *testing.T) core.Store { return store })
		})
	}
}

// TestConcurrentSessionSaves: 32 goroutines each save their own session 200
// times (load, increment, conditional save) on one file database: no
// "database is locked", no lost write.
func TestConcurrentSessionSaves(t *testing.T) {
	const goroutines, saves = 32, 200
	ctx := context.Background()
	store := newStore(t, mustOpen(t, "sqlite://"+filepath.ToSlash(filepath.Join(t.TempDir(), "sessions.db"))))
	opts := &core.Options{Expiry: core.OnInactivity(time.Hour)}

	tokens := make([]string, goroutines)
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			token := ""
			for i := range saves {
				s := core.NewSession(store, token, opts)
				n, _, err := core.Get[int](ctx, s, "counter")
				if err == nil && n != i {
					err = fmt.Errorf("read %d, want %d", n, i)
				}
				if err == nil {
					err = s.Insert(ctx, "counter", n+1)
				}
				if err == nil {
					_, err = s.Commit(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d save %d: %w", g, i, err)
					return
				}
				token = s.Token().String()
			}
			tokens[g] = token
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for g, token := range tokens {
		if token == "" {
			continue
		}
		n, ok, err := core.Get[int](ctx, core.NewSession(store, token, opts), "counter")
		if err != nil || !ok || n != saves {
			t.Errorf("session %d: counter %d (present %v, err %v), want %d", g, n, ok, err, saves)
		}
	}
}

// TestConcurrentSharedSession: 8 goroutines increment their own key of ONE
// session 50 times each; every save races the others on the same row, and
// the store's conditional save plus the session's replay must keep all of
// them.
func TestConcurrentSharedSession(t *testing.T) {
	const goroutines, saves = 8, 50
	ctx := context.Background()
	store := newStore(t, mustOpen(t, "sqlite://"+filepath.ToSlash(filepath.Join(t.TempDir(), "shared.db"))))
	opts := &core.Options{Expiry: core.OnInactivity(time.Hour)}

	s := core.NewSession(store, "", opts)
	if err := s.Insert(ctx, "created", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	token := s.Token().String()

	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		key := fmt.Sprintf("k%d", g)
		wg.Go(func() {
			for i := range saves {
				s := core.NewSession(store, token, opts)
				n, _, err := core.Get[int](ctx, s, key)
				if err == nil {
					err = s.Insert(ctx, key, n+1)
				}
				if err == nil {
					_, err = s.Commit(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d save %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final := core.NewSession(store, token, opts)
	for g := range goroutines {
		n, _, err := core.Get[int](ctx, final, fmt.Sprintf("k%d", g))
		if err != nil || n != saves {
			t.Errorf("k%d = %d (%v), want %d", g, n, err, saves)
		}
	}
}

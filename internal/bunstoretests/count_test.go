package bunstoretests

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// hookCounter is a bun query hook counting the statements it sees.
type hookCounter struct{ n atomic.Int64 }

func (h *hookCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (h *hookCounter) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	if ev.Query != "" {
		h.n.Add(1)
	}
}

// TestStatementCounts counts statements two ways that must agree: a bun
// query hook (attached to the *bun.DB, with WithBunQueryHooks) and a
// counter in the database/sql driver, which sees everything the pool sends.
// Store: Create, Save, Load, Delete = 1 statement each. Session: untouched
// 0, read 1, read-modify-write 2, new 1, unchanged read 1.
func TestStatementCounts(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			var wire dbtest.Counter
			hook := &hookCounter{}
			db := d.OpenCounting(t, &wire).WithQueryHook(hook)
			s := dbtest.NewStore(t, db, bunstore.WithBunQueryHooks())
			ctx := context.Background()
			check := func(what string, want int64, fn func()) {
				t.Helper()
				wire.Reset()
				hook.n.Store(0)
				fn()
				if got := wire.Load(); got != want {
					t.Errorf("%s: %d statements reached the database, want %d", what, got, want)
				}
				if got := hook.n.Load(); got != want {
					t.Errorf("%s: the query hook saw %d statements, want %d", what, got, want)
				}
			}
			rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
			check("Create", 1, func() {
				if err := s.Create(ctx, rec); err != nil {
					t.Fatal(err)
				}
			})
			check("Load", 1, func() {
				if got, err := s.Load(ctx, rec.ID, now()); err != nil || got == nil {
					t.Fatal(got, err)
				}
			})
			check("Save", 1, func() {
				if err := s.Save(ctx, rec); err != nil {
					t.Fatal(err)
				}
			})
			check("Delete", 1, func() {
				if err := s.Delete(ctx, rec.ID); err != nil {
					t.Fatal(err)
				}
			})

			var token string
			check("new session", 1, func() {
				sess := core.NewSession(s, "", nil)
				if err := sess.Insert(ctx, "n", 1); err != nil {
					t.Fatal(err)
				}
				if _, err := sess.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				token = sess.Token().String()
			})
			check("untouched session", 0, func() {
				sess := core.NewSession(s, token, nil)
				if _, err := sess.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})
			check("read", 1, func() {
				sess := core.NewSession(s, token, nil)
				if n, ok, err := core.Get[int](ctx, sess, "n"); err != nil || !ok || n != 1 {
					t.Fatal(n, ok, err)
				}
				if _, err := sess.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})
			check("read-modify-write", 2, func() {
				sess := core.NewSession(s, token, nil)
				n, _, err := core.Get[int](ctx, sess, "n")
				if err != nil {
					t.Fatal(err)
				}
				if err := sess.Insert(ctx, "n", n+1); err != nil {
					t.Fatal(err)
				}
				if _, err := sess.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

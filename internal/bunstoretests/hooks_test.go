package bunstoretests

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/extra/bundebug"
)

// eventRecorder is a bun query hook that records the operation and SQL of
// every query event it sees.
type eventRecorder struct {
	mu     sync.Mutex
	events []string // "OPERATION SQL"
}

func (r *eventRecorder) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (r *eventRecorder) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev.Operation()+" "+ev.Query)
}

// take returns the events since the last take.
func (r *eventRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// TestBunQueryHooks: with WithBunQueryHooks, query hooks registered on the
// *bun.DB (a recorder and bun's own bundebug) see every statement the store
// sends exactly once, under its operation; without it they see none of the
// per-request statements.
func TestBunQueryHooks(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			var wire dbtest.Counter
			rec := &eventRecorder{}
			debug := &syncbuf.Buffer{}
			db := d.OpenCounting(t, &wire).
				WithQueryHook(rec).
				WithQueryHook(bundebug.NewQueryHook(bundebug.WithWriter(debug), bundebug.WithVerbose(true)))
			s := dbtest.NewStore(t, db, bunstore.WithBunQueryHooks(), bunstore.WithDeleteBatchSize(2))
			ctx := context.Background()
			mysql := d.Name == "mysql"
			// step runs fn and checks that the hooks saw the operations
			// want, one event per statement sent (besides a transaction's
			// BEGIN and COMMIT, which bun's hooks see too).
			step := func(what string, want []string, fn func()) {
				t.Helper()
				wire.Reset()
				rec.take()
				debugLines := strings.Count(debug.String(), "\n")
				fn()
				var ops []string
				events := rec.take()
				for _, ev := range events {
					op, _, _ := strings.Cut(ev, " ")
					if op != "BEGIN" && op != "COMMIT" {
						ops = append(ops, op)
					}
				}
				if !slices.Equal(ops, want) {
					t.Errorf("%s: the hook saw %v, want %v (events %q)", what, ops, want, events)
				}
				if n := wire.Load(); int64(len(ops)) != n {
					t.Errorf("%s: the hook saw %d statements, the database got %d", what, len(ops), n)
				}
				lines := strings.Count(debug.String(), "\n")
				if lines-debugLines != len(events) {
					t.Errorf("%s: bundebug logged %d queries, want %d:\n%s", what, lines-debugLines, len(events), debug.String())
				}
			}
			exp := now().Add(time.Hour)
			rec1 := newRecord(t, s, exp, "k", "v")
			rec1.User = "alice"
			step("Create", []string{"INSERT"}, func() {
				if err := s.Create(ctx, rec1); err != nil {
					t.Fatal(err)
				}
			})
			step("Load", []string{"SELECT"}, func() {
				if got, err := s.Load(ctx, rec1.ID, now()); err != nil || got == nil {
					t.Fatal(got, err)
				}
			})
			step("Load missing", []string{"SELECT"}, func() {
				if got, err := s.Load(ctx, newID(t), now()); err != nil || got != nil {
					t.Fatal(got, err)
				}
			})
			step("Save", []string{"UPDATE"}, func() {
				if err := s.Save(ctx, rec1); err != nil {
					t.Fatal(err)
				}
			})
			step("UserSessions", []string{"SELECT"}, func() {
				if got, err := s.UserSessions(ctx, "alice", now()); err != nil || len(got) != 1 {
					t.Fatal(got, err)
				}
			})
			step("DeleteUserSessions", []string{"DELETE"}, func() {
				if n, err := s.DeleteUserSessions(ctx, "alice", ""); err != nil || n != 1 {
					t.Fatal(n, err)
				}
			})
			rec2 := newRecord(t, s, exp, "k", "v")
			if err := s.Create(ctx, rec2); err != nil {
				t.Fatal(err)
			}
			rec2.Data = map[string][]byte{}
			step("Save empty", []string{"DELETE"}, func() {
				if err := s.Save(ctx, rec2); err != nil {
					t.Fatal(err)
				}
			})
			rec3 := newRecord(t, s, exp, "k", "v")
			if err := s.Create(ctx, rec3); err != nil {
				t.Fatal(err)
			}
			take := []string{"DELETE"}
			if mysql {
				take = []string{"SELECT", "DELETE"} // in a transaction
			}
			step("Take", take, func() {
				if got, err := s.Take(ctx, rec3.ID, now()); err != nil || got == nil {
					t.Fatal(got, err)
				}
			})
			step("Delete", []string{"DELETE"}, func() {
				if err := s.Delete(ctx, rec1.ID); err != nil {
					t.Fatal(err)
				}
			})
			for range 5 {
				if err := s.Create(ctx, newRecord(t, s, now().Add(-time.Hour), "k", "v")); err != nil {
					t.Fatal(err)
				}
			}
			// Batches of 2 and then 1: the store's statement, and one
			// with another LIMIT.
			step("DeleteExpired", []string{"DELETE", "DELETE"}, func() {
				if n, err := s.DeleteExpired(ctx, now(), 3); err != nil || n != 3 {
					t.Fatal(n, err)
				}
			})

			// Without the option, bun's hooks see Migrate only.
			var opts []bunstore.Option
			if s.SchemaName() != "" {
				opts = append(opts, bunstore.WithSchemaName(s.SchemaName()))
			}
			plain, err := bunstore.New(db, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			rec4 := newRecord(t, plain, exp, "k", "v")
			wire.Reset()
			rec.take()
			if err := plain.Create(ctx, rec4); err != nil {
				t.Fatal(err)
			}
			if _, err := plain.Load(ctx, rec4.ID, now()); err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); len(got) != 0 || wire.Load() != 2 {
				t.Errorf("without WithBunQueryHooks: the hook saw %q, the database got %d statements", got, wire.Load())
			}
		})
	}
}

// TestBunQueryHooksSession: a session's statements through the hooks, as an
// application sees them: a new session costs one INSERT, a
// read-modify-write one SELECT and one UPDATE.
func TestBunQueryHooksSession(t *testing.T) {
	rec := &eventRecorder{}
	db := dbtest.OpenSQLite(t).WithQueryHook(rec)
	s := dbtest.NewStore(t, db, bunstore.WithBunQueryHooks())
	ctx := context.Background()
	rec.take()
	sess := core.NewSession(s, "", nil)
	if _, err := core.Update(ctx, sess, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sess = core.NewSession(s, sess.Token().String(), nil)
	if _, err := core.Update(ctx, sess, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, ev := range rec.take() {
		op, _, _ := strings.Cut(ev, " ")
		ops = append(ops, op)
	}
	if want := []string{"INSERT", "SELECT", "UPDATE"}; !slices.Equal(ops, want) {
		t.Errorf("the hook saw %v, want %v", ops, want)
	}
}

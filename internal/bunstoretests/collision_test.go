package bunstoretests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// twin returns a second Store on s's table, as another process would have:
// it shares the database and nothing in memory.
func twin(t *testing.T, db *bun.DB, s *bunstore.Store) *bunstore.Store {
	t.Helper()
	opts := []bunstore.Option{bunstore.WithTableName(s.TableName())}
	if s.SchemaName() != "" {
		opts = append(opts, bunstore.WithSchemaName(s.SchemaName()))
	}
	o, err := bunstore.New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// loadedSession returns a session on token with its record loaded.
func loadedSession(t *testing.T, s core.Store, token string) *core.Session {
	t.Helper()
	sess := core.NewSession(s, token, nil)
	if _, err := sess.Keys(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sess
}

func insertCommit(t *testing.T, sess *core.Session, key string, v any, want core.CommitResult) {
	t.Helper()
	ctx := context.Background()
	if err := sess.Insert(ctx, key, v); err != nil {
		t.Fatal(err)
	}
	res, err := sess.Commit(ctx)
	if want == core.Superseded && errors.Is(err, core.ErrSuperseded) {
		err = nil // what a dropped change reports
	}
	if err != nil || res != want {
		t.Fatalf("Commit = %v, %v; want %v", res, err, want)
	}
}

func keysOf(t *testing.T, s core.Store, token string) string {
	t.Helper()
	keys, err := core.NewSession(s, token, nil).Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(keys, ",")
}

// TestCollisionStatements: a save that loses to a concurrent write of the
// same session costs the store 3 statements (the failed UPDATE, a SELECT,
// the replayed UPDATE); with core's CachingStore in front, which names the
// cached winner itself, 1 (the replayed UPDATE), as without a collision.
// Counted on the wire, on every dialect; nothing is lost either way.
func TestCollisionStatements(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				name    string
				caching bool
				want    int64
			}{{"store", false, 3}, {"caching", true, 1}} {
				t.Run(tc.name, func(t *testing.T) {
					var wire dbtest.Counter
					db := d.OpenCounting(t, &wire)
					var s core.Store = dbtest.NewStore(t, db)
					if tc.caching {
						s = core.NewCachingStore(s, core.CachingOptions{})
					}
					sess := core.NewSession(s, "", nil)
					insertCommit(t, sess, "n", 1, core.Saved)
					token := sess.Token().String()

					a, b := loadedSession(t, s, token), loadedSession(t, s, token)
					insertCommit(t, b, "b", 2, core.Saved)
					wire.Reset()
					insertCommit(t, a, "a", 3, core.Saved)
					if got := wire.Load(); got != tc.want {
						t.Errorf("the conflicting commit ran %d statements, want %d", got, tc.want)
					}
					if got := keysOf(t, s, token); got != "a,b,n" {
						t.Errorf("keys %q, want a,b,n", got)
					}
				})
			}
		})
	}
}

// TestTwoProcesses: a CachingStore's record is outdated by a write of
// another store on the same table (another process). The replay on the
// outdated record conflicts in the database and reloads for real: every
// write survives. A session the other process deleted is not resurrected
// from memory.
func TestTwoProcesses(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		s1 := dbtest.NewStore(t, db)
		p1 := core.NewCachingStore(s1, core.CachingOptions{})
		p2 := twin(t, db, s1)

		sess := core.NewSession(p1, "", nil)
		insertCommit(t, sess, "n", 1, core.Saved)
		token := sess.Token().String()
		x := loadedSession(t, p1, token)                                 // version 1
		insertCommit(t, loadedSession(t, p1, token), "y", 2, core.Saved) // p1 caches version 2
		insertCommit(t, loadedSession(t, p2, token), "z", 3, core.Saved) // the table is at 3
		insertCommit(t, x, "x", 4, core.Saved)
		if got := keysOf(t, p2, token); got != "n,x,y,z" {
			t.Errorf("keys %q, want n,x,y,z", got)
		}

		// Deleted by the other process while p1 still caches it.
		sess = core.NewSession(p1, "", nil)
		insertCommit(t, sess, "n", 1, core.Saved)
		token = sess.Token().String()
		x = loadedSession(t, p1, token)
		insertCommit(t, loadedSession(t, p1, token), "y", 2, core.Saved)
		if err := loadedSession(t, p2, token).Flush(ctx); err != nil {
			t.Fatal(err)
		}
		insertCommit(t, x, "x", 4, core.Superseded)
		tok, err := core.ParseToken(token)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := p2.Load(ctx, tok.ID(), time.Now()); err != nil || rec != nil {
			t.Errorf("a session deleted by another process came back: %+v, %v", rec, err)
		}
	})
}

package bunstoretests

import (
	"context"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// TestSavesUpdateInPlace: repeated saves of a session keep its stored
// deadline while the renewal is under a step (core renews expiries in steps),
// so PostgreSQL updates the row in place (HOT) instead of writing new entries
// in the expiry index at every save.
func TestSavesUpdateInPlace(t *testing.T) {
	ctx := context.Background()
	db := dbtest.OpenPostgres(t)
	s := dbtest.NewStore(t, db)
	sess := core.NewSession(s, "", nil)
	if err := sess.Insert(ctx, "n", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	token := sess.Token().String()
	const saves = 50
	for i := range saves {
		next := core.NewSession(s, token, nil)
		if err := next.Insert(ctx, "n", i+1); err != nil {
			t.Fatal(err)
		}
		if res, err := next.Commit(ctx); err != nil || res != core.Saved {
			t.Fatalf("save %d: %v, %v", i, res, err)
		}
	}
	// Table statistics reach pg_stat_user_tables within about a second.
	var updates, hot int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err := db.QueryRowContext(ctx, "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = ? AND relname = ?",
			s.SchemaName(), s.TableName()).Scan(&updates, &hot)
		if err != nil {
			t.Fatal(err)
		}
		if updates >= saves {
			break
		}
	}
	if updates < saves {
		t.Fatalf("statistics show %d updates, want %d", updates, saves)
	}
	// A page may fill up now and then; nearly all updates must be HOT.
	if hot < updates*9/10 {
		t.Fatalf("%d of %d updates were HOT: saves rewrite an indexed column", hot, updates)
	}
}

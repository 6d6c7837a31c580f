package bunstoretests

import (
	"context"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// TestUserKeysAreExact: user keys that differ only by trailing spaces, case,
// width or composition are different users on every backend: listing or
// revoking one never touches another's sessions. (MariaDB compares a
// VARCHAR, even under a _bin collation, with trailing spaces ignored.)
func TestUserKeysAreExact(t *testing.T) {
	users := []string{"a", "a ", "a  ", " a", "A", "ａ", "á", "a\u0301", "a\t", strings255()}
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		ids := map[string]core.ID{}
		for _, u := range users {
			sess := core.NewSession(s, "", &core.Options{Expiry: core.OnInactivity(time.Hour)})
			if err := sess.Insert(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
			if err := sess.SetUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			if _, err := sess.Commit(ctx); err != nil {
				t.Fatalf("user %q: %v", u, err)
			}
			ids[u] = sess.ID()
		}
		for _, u := range users {
			list, err := s.UserSessions(ctx, u, now())
			if err != nil || len(list) != 1 || list[0].ID != ids[u] {
				t.Errorf("UserSessions(%q): %+v, %v; want only its own session", u, list, err)
			}
		}
		if n, err := s.DeleteUserSessions(ctx, "a", ""); err != nil || n != 1 {
			t.Errorf(`DeleteUserSessions("a"): %d, %v; want 1`, n, err)
		}
		for _, u := range users[1:] {
			if rec, err := s.Load(ctx, ids[u], now()); err != nil || rec == nil || rec.User != u {
				t.Errorf(`user %q after DeleteUserSessions("a"): %+v, %v`, u, rec, err)
			}
		}
	})
}

// strings255 is a user key of core.MaxUserLen bytes, multi-byte characters
// included.
func strings255() string {
	b := []byte("é")
	for len(b)+2 <= core.MaxUserLen {
		b = append(b, "é"...)
	}
	for len(b) < core.MaxUserLen {
		b = append(b, 'x')
	}
	return string(b)
}

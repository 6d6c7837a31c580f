package bunstoretests

import (
	"context"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// setVersion overwrites the stored version of id with SQL.
func setVersion(t *testing.T, db *bun.DB, tbl bun.Ident, id core.ID, v int64) {
	t.Helper()
	res, err := db.ExecContext(context.Background(), "UPDATE ? SET version = ? WHERE id = ?", tbl, v, string(id))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("setting version %d: %d rows", v, n)
	}
}

// TestVersionGoesBack: the stored version drops below what this process
// wrote (a restore from backup, a failover to a lagging replica). The next
// request saves on the row as it is now instead of chasing the version the
// store remembers writing until it gives up with a 500.
func TestVersionGoesBack(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		h := newHTTPRig(t, s)
		r := h.do("POST", "", "")
		c := r.cookie.Value
		for range 4 {
			r = h.do("POST", c, "")
		}
		if r.code != 200 || r.st.N != 5 {
			t.Fatalf("five saves: %v", r)
		}
		setVersion(t, db, table(s), cookieID(t, c), 2)
		if r := h.do("POST", c, ""); r.code != 200 || r.st.N != 6 {
			t.Fatalf("a save after the version went back: %v", r)
		}
		if r := h.do("GET", c, ""); r.code != 200 || r.st.N != 6 {
			t.Fatalf("read: %v", r)
		}
	})
}

package bunstoretests

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
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

// TestVersionNearMax: a session stored at version MaxInt64-1 saves once,
// to MaxInt64, under the same cookie; the next save moves it to a new id
// with its data, user and creation time, and the old id is gone. No 500 on
// the way, on every backend.
func TestVersionNearMax(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		h := newHTTPRig(t, s)
		ctx := context.Background()
		first := h.do("POST", "", "?user=alice")
		if first.code != 200 || first.cookie == nil {
			t.Fatalf("new session: %v", first)
		}
		c1 := first.cookie.Value
		id1 := cookieID(t, c1)
		before, err := s.Load(ctx, id1, now())
		if err != nil || before == nil {
			t.Fatalf("Load: %v, %v", before, err)
		}
		setVersion(t, db, table(s), id1, math.MaxInt64-1)

		r := h.do("POST", c1, "")
		if r.code != 200 || r.st.N != 2 || (r.cookie != nil && r.cookie.Value != c1) {
			t.Fatalf("save at MaxInt64-1: %v; want n=2 under the same cookie", r)
		}
		if rec, err := s.Load(ctx, id1, now()); err != nil || rec == nil || rec.Version != math.MaxInt64 {
			t.Fatalf("after the save at MaxInt64-1: %+v, %v; want version MaxInt64", rec, err)
		}
		if r := h.do("GET", c1, ""); r.code != 200 || r.st.N != 2 {
			t.Fatalf("read at MaxInt64: %v", r)
		}

		r = h.do("POST", c1, "")
		if r.code != 200 || r.st.N != 3 || r.st.User != "alice" || r.cookie == nil || r.cookie.Value == c1 || r.removed() {
			t.Fatalf("save at MaxInt64: %v; want n=3 for alice under a new cookie", r)
		}
		c2 := r.cookie.Value
		if rowExists(t, db, s, id1) {
			t.Error("the old id is still stored")
		}
		moved, err := s.Load(ctx, cookieID(t, c2), now())
		if err != nil || moved == nil {
			t.Fatalf("Load of the new id: %v, %v", moved, err)
		}
		if moved.Version != 1 || moved.User != "alice" || !moved.Created.Equal(before.Created) {
			t.Errorf("moved record: version %d, user %q, created %v; want 1, alice, %v", moved.Version, moved.User, moved.Created, before.Created)
		}
		if r := h.do("GET", c2, ""); r.code != 200 || r.st.N != 3 {
			t.Errorf("the moved session: %v", r)
		}
		if r := h.do("GET", c1, ""); r.code != 200 || r.st.Present || !r.removed() {
			t.Errorf("the old cookie: %v; want no session", r)
		}
		if r := h.do("POST", c2, ""); r.code != 200 || r.st.N != 4 || (r.cookie != nil && r.cookie.Value != c2) {
			t.Errorf("a save after the move: %v", r)
		}
	})
}

// TestStoreSaveAtMaxVersion: Store.Save of a record at version MaxInt64
// (which core never asks for: it moves the record first) is an error that
// changes nothing. It must never store a version that does not load:
// SQLite turns MaxInt64+1 into a REAL.
func TestStoreSaveAtMaxVersion(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		rec := newRecord(t, s, now().Add(time.Hour), "n", 1)
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		setVersion(t, db, table(s), rec.ID, math.MaxInt64)
		rec.Version = math.MaxInt64
		b, _ := s.Codec().Marshal(2)
		rec.Data["n"] = b
		if err := s.Save(ctx, rec); err == nil {
			t.Error("Save at version MaxInt64 succeeded")
		}
		got, err := s.Load(ctx, rec.ID, now())
		if err != nil || got == nil || got.Version != math.MaxInt64 || string(got.Data["n"]) != string([]byte{1}) {
			t.Fatalf("after Save at MaxInt64: %+v, %v; want the record unchanged", got, err)
		}
		// Emptied, it is deleted: that needs no new version.
		got.Data = map[string][]byte{}
		if err := s.Save(ctx, got); err != nil {
			t.Fatalf("deleting at MaxInt64: %v", err)
		}
		if rowExists(t, db, s, rec.ID) {
			t.Error("an emptied record at MaxInt64 was not deleted")
		}
	})
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

// TestExtremeExpiries: deadlines beyond what a database holds (the year
// 10000 is past MySQL's DATETIME, 300000 past PostgreSQL's timestamptz, an
// inactivity of MaxInt64 nanoseconds overflows SQLite's microseconds) are
// clamped to core.MaxDeadline on every backend: the request answers 200
// with a Max-Age that matches the stored expiry, the session loads again,
// saves again, and the purge leaves it alone.
func TestExtremeExpiries(t *testing.T) {
	expiries := map[string]core.Expiry{
		"AtDateTime(10000)":       core.AtDateTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
		"AtDateTime(300000)":      core.AtDateTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)),
		"AtDateTime(MaxDeadline)": core.AtDateTime(core.MaxDeadline),
		// time.Duration ends after 292 years: this one is in 2319.
		"OnInactivity(MaxInt64)": core.OnInactivity(math.MaxInt64),
	}
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		for name, e := range expiries {
			h := newHTTPRig(t, s, httpadapter.WithExpiry(e))
			r := h.do("POST", "", "")
			if r.code != 200 || r.cookie == nil || r.removed() {
				t.Errorf("%s: %v", name, r)
				continue
			}
			want := core.MaxDeadline
			if d, ok := e.Inactivity(); ok {
				want = time.Now().Add(d)
			}
			id := cookieID(t, r.cookie.Value)
			rec, err := s.Load(ctx, id, now())
			if err != nil || rec == nil {
				t.Errorf("%s: Load: %+v, %v", name, rec, err)
				continue
			}
			if d := rec.Expiry.Sub(want); d > 0 || d < -5*time.Second {
				t.Errorf("%s: stored expiry %v, want %v", name, rec.Expiry, want)
			}
			left := time.Until(rec.Expiry).Seconds()
			if ma := float64(r.cookie.MaxAge); ma <= 0 || ma > left+1 || ma < left-5 {
				t.Errorf("%s: Max-Age %d, the stored expiry is %.0f s away", name, r.cookie.MaxAge, left)
			}
			if got := h.do("GET", r.cookie.Value, ""); got.code != 200 || got.st.N != 1 {
				t.Errorf("%s: loading again: %v", name, got)
			}
			if got := h.do("POST", r.cookie.Value, ""); got.code != 200 || got.st.N != 2 {
				t.Errorf("%s: saving again: %v", name, got)
			}
			if _, err := s.DeleteExpired(ctx, now(), 0); err != nil {
				t.Fatal(err)
			}
			if !rowExists(t, db, s, id) {
				t.Errorf("%s: the purge removed the session", name)
			}
		}
	})
}

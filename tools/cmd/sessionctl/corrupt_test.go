package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// rowDamage is one column of a row overwritten with SQL.
type rowDamage struct {
	name string
	set  string // SET clause; "?" takes arg
	arg  any
	// unreadableExpiry: purge must remove the row.
	unreadableExpiry bool
}

func rowDamages(d dialect.Name) []rowDamage {
	ds := []rowDamage{
		{name: "data garbage", set: "data = ?", arg: []byte("garbage")},
		{name: "data 4 MiB of 0x91", set: "data = ?", arg: append([]byte{0x81, 0xa1, 'k'}, bytes.Repeat([]byte{0x91}, 4<<20)...)},
		{name: "version -1", set: "version = -1"},
	}
	switch d {
	case dialect.PG:
		ds = append(ds,
			rowDamage{name: "expiry infinity", set: "expiry_date = 'infinity'", unreadableExpiry: true},
			rowDamage{name: "expiry year 10000", set: "expiry_date = '10000-01-01 00:00:00+00'", unreadableExpiry: true},
			rowDamage{name: "created infinity", set: "created_at = 'infinity'"},
		)
	case dialect.SQLite:
		ds = append(ds,
			rowDamage{name: "expiry text", set: "expiry_date = 'never'", unreadableExpiry: true},
			rowDamage{name: "expiry REAL 1e300", set: "expiry_date = 1e300", unreadableExpiry: true},
			rowDamage{name: "expiry max int64", set: "expiry_date = 9223372036854775807", unreadableExpiry: true},
			rowDamage{name: "version text", set: "version = 'abc'"},
			rowDamage{name: "created text", set: "created_at = 'yesterday'"},
		)
	}
	return ds
}

// TestCorruptRows: inspect of a row that cannot be read exits 1 with one
// line that says so and how to remove it (never a panic, never megabytes);
// sessions --user lists the readable sessions; purge removes the rows whose
// expiry cannot be read and leaves live ones; revoke --id removes any row.
func TestCorruptRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, s *bunstore.Store) {
		ctx := context.Background()
		tbl := bun.Ident(s.TableName())
		if s.SchemaName() != "" {
			tbl = bun.Ident(s.SchemaName() + "." + s.TableName())
		}
		ds := rowDamages(b.db.Dialect().Name())
		toks := make([]core.Token, len(ds))
		for i, d := range ds {
			toks[i] = newUserSession(t, s, "alice", map[string]any{"k": i})
			args := []any{tbl}
			if d.arg != nil {
				args = append(args, d.arg)
			}
			args = append(args, string(toks[i].ID()))
			if _, err := b.db.ExecContext(ctx, "UPDATE ? SET "+d.set+" WHERE id = ?", args...); err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
			for _, json := range [][]string{nil, {"--json"}} {
				args := append(append([]string{"inspect", "--id", string(toks[i].ID())}, json...), b.args...)
				r := runCLI(t, nil, args...)
				if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "cannot be read") || !strings.Contains(r.stderr, "revoke --id "+string(toks[i].ID())) {
					t.Errorf("%s: inspect %s: exit %d, stdout %q, stderr %.300q; want exit 1 naming the row unreadable and how to remove it", d.name, json, r.code, r.stdout, r.stderr)
				}
				if len(r.stderr) > 1000 {
					t.Errorf("%s: inspect: %d bytes of error", d.name, len(r.stderr))
				}
				checkOneLineError(t, r)
			}
		}
		good := newUserSession(t, s, "alice", map[string]any{"k": "fine"})

		// stats counts a row whose expiry no session has as unreadable,
		// not live; the other damaged rows have a live expiry.
		unreadable := 0
		for _, d := range ds {
			if d.unreadableExpiry {
				unreadable++
			}
		}
		statsOf := func() statsOutput {
			t.Helper()
			r := runCLI(t, nil, append([]string{"stats", "--json"}, b.args...)...)
			var out statsOutput
			if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
				t.Fatalf("stats: exit %d, %v, stdout %q, stderr %q", r.code, err, r.stdout, r.stderr)
			}
			return out
		}
		if got := statsOf(); got.Live != int64(len(ds)-unreadable+1) || got.Unreadable != int64(unreadable) || got.Expired != 0 {
			t.Errorf("stats before purge: live %d, unreadable %d, expired %d; want %d, %d, 0", got.Live, got.Unreadable, got.Expired, len(ds)-unreadable+1, unreadable)
		}

		r := runCLI(t, nil, append([]string{"sessions", "--user", "alice"}, b.args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, string(good.ID())) {
			t.Errorf("sessions --user alice: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}

		r = runCLI(t, nil, append([]string{"purge"}, b.args...)...)
		if r.code != 0 {
			t.Fatalf("purge: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		for i, d := range ds {
			if n := rowCount(t, b.db, tbl, toks[i].ID()); d.unreadableExpiry && n != 0 {
				t.Errorf("%s: purge left the row", d.name)
			} else if !d.unreadableExpiry && n != 1 {
				t.Errorf("%s: purge removed a row that had not expired", d.name)
			}
		}
		if !loaded(t, s, good.ID()) {
			t.Error("purge removed a live session")
		}
		if got := statsOf(); got.Unreadable != 0 || got.Live != int64(len(ds)-unreadable+1) {
			t.Errorf("stats after purge: live %d, unreadable %d; want %d, 0", got.Live, got.Unreadable, len(ds)-unreadable+1)
		}
		for i, d := range ds {
			if d.unreadableExpiry {
				continue
			}
			r := runCLI(t, nil, append([]string{"revoke", "--id", string(toks[i].ID())}, b.args...)...)
			if r.code != 0 || rowCount(t, b.db, tbl, toks[i].ID()) != 0 {
				t.Errorf("%s: revoke --id: exit %d, stderr %q", d.name, r.code, r.stderr)
			}
		}
	})
}

// newUserSession creates a session of user holding values, through core.
func newUserSession(t *testing.T, s core.Store, user string, values map[string]any) core.Token {
	t.Helper()
	ctx := context.Background()
	sess := core.NewSession(s, "", &core.Options{Expiry: core.OnInactivity(time.Hour)})
	for k, v := range values {
		if err := sess.Insert(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.SetUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return sess.Token()
}

func rowCount(t *testing.T, db *bun.DB, tbl bun.Ident, id core.ID) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM ? WHERE id = ?", tbl, string(id)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

package bunstoretests

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// corruption is one column of a row overwritten with SQL, as an
// administrator, a bug or a restore from elsewhere could leave it.
type corruption struct {
	name string
	// set is the SET clause ("expiry_date = 'infinity'"); "?" takes args.
	set  string
	args []any
	// pre runs first on the same connection (MySQL's sql_mode).
	pre string
	// same: the value is odd but readable, and the session is served with
	// its data; otherwise the request gets no session.
	same bool
	// purged: the expiry is past or cannot be read, so DeleteExpired must
	// remove the row.
	purged bool
}

// Blobs that are not records. 0x91 is a one-element array: 4 MiB of it
// nest four million levels deep, past any recursive decoder's stack.
var (
	deepRaw     = bytes.Repeat([]byte{0x91}, 4<<20)
	deepWrapped = append([]byte{0x81, 0xa1, 'n'}, bytes.Repeat([]byte{0x91}, 4<<20)...)
	truncated   = []byte{0x82, 0xa1, 'n', 0x01, 0xa4, 'u', 's'}
	// A map whose one key is 1 MiB long and whose value is no object.
	hugeKey = append(append([]byte{0x81, 0xdb, 0x00, 0x10, 0x00, 0x00}, bytes.Repeat([]byte{'k'}, 1<<20)...), 0xc1)
)

// dataCorruptions apply to every dialect.
func dataCorruptions() []corruption {
	return []corruption{
		{name: "data garbage", set: "data = ?", args: []any{[]byte("garbage")}},
		{name: "data empty", set: "data = ?", args: []any{[]byte{}}},
		{name: "data 4 MiB of 0x91", set: "data = ?", args: []any{deepRaw}},
		{name: "data map of 4 MiB of 0x91", set: "data = ?", args: []any{deepWrapped}},
		{name: "data truncated", set: "data = ?", args: []any{truncated}},
		{name: "data 1 MiB key", set: "data = ?", args: []any{hugeKey}},
		{name: "data map of 2^32-1 entries", set: "data = ?", args: []any{[]byte{0xdf, 0xff, 0xff, 0xff, 0xff}}},
		{name: "version -1", set: "version = -1"},
		{name: "version min int64", set: "version = " + strconv.FormatInt(math.MinInt64, 10)},
		{name: "version 0", set: "version = 0", same: true},
		{name: "user_key empty string", set: "user_key = ''", same: true},
	}
}

// corruptions lists, per dialect, every column overwritten with values the
// store never writes.
func corruptions(d dialect.Name) []corruption {
	cs := dataCorruptions()
	switch d {
	case dialect.PG:
		cs = append(cs,
			corruption{name: "expiry infinity", set: "expiry_date = 'infinity'", purged: true},
			corruption{name: "expiry -infinity", set: "expiry_date = '-infinity'", purged: true},
			corruption{name: "expiry year 10000", set: "expiry_date = '10000-01-01 00:00:00+00'", purged: true},
			corruption{name: "expiry year 294276", set: "expiry_date = '294276-12-31 23:59:59+00'", purged: true},
			corruption{name: "expiry 4713 BC", set: "expiry_date = '4713-01-01 00:00:00+00 BC'", purged: true},
			corruption{name: "expiry epoch", set: "expiry_date = '1970-01-01 00:00:00+00'", purged: true},
			corruption{name: "expiry last microsecond of 9999", set: "expiry_date = '9999-12-31 23:59:59.999999+00'", same: true},
			corruption{name: "created infinity", set: "created_at = 'infinity'"},
			corruption{name: "created -infinity", set: "created_at = '-infinity'"},
			corruption{name: "created year 10000", set: "created_at = '10000-01-01 00:00:00+00'"},
			corruption{name: "created 4713 BC", set: "created_at = '4713-01-01 00:00:00+00 BC'", same: true},
			corruption{name: "created NULL", set: "created_at = NULL", same: true},
			corruption{name: "user_key 100000 bytes", set: "user_key = repeat('x', 100000)", same: true},
			corruption{name: "user_key odd text", set: "user_key = ?", args: []any{"ü🙂 \"q\" \n\t' --"}, same: true},
		)
	case dialect.MySQL:
		const loose = "SET SESSION sql_mode = ''"
		cs = append(cs,
			corruption{name: "expiry zero date", set: "expiry_date = '0000-00-00 00:00:00'", pre: loose, purged: true},
			corruption{name: "expiry text", set: "expiry_date = 'garbage'", pre: loose, purged: true},
			corruption{name: "expiry year 1000", set: "expiry_date = '1000-01-01 00:00:00'", purged: true},
			corruption{name: "expiry February 30", set: "expiry_date = '2100-02-30 00:00:00'", pre: "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'", same: true},
			corruption{name: "expiry last microsecond of 9999", set: "expiry_date = '9999-12-31 23:59:59.999999'", same: true},
			corruption{name: "created zero date", set: "created_at = '0000-00-00 00:00:00'", pre: loose, same: true},
			corruption{name: "created text", set: "created_at = 'garbage'", pre: loose, same: true},
			corruption{name: "created NULL", set: "created_at = NULL", same: true},
			corruption{name: "user_key 255 bytes", set: "user_key = ?", args: []any{strings.Repeat("🙂", 63) + "abc"}, same: true},
			corruption{name: "user_key not UTF-8", set: "user_key = X'ff00'", same: true},
			corruption{name: "user_key odd text", set: "user_key = ?", args: []any{"ü🙂 \"q\" \n\t' --"}, same: true},
		)
	case dialect.SQLite:
		cs = append(cs,
			corruption{name: "expiry text", set: "expiry_date = 'garbage'", purged: true},
			corruption{name: "expiry text of a past date", set: "expiry_date = '2001-01-01 00:00:00'", purged: true},
			corruption{name: "expiry text of a future date", set: "expiry_date = '2100-01-01 00:00:00'", purged: true},
			corruption{name: "expiry 1 MB of text", set: "expiry_date = ?", args: []any{strings.Repeat("z", 1<<20)}, purged: true},
			corruption{name: "expiry blob", set: "expiry_date = X'0102'", purged: true},
			corruption{name: "expiry real 1.5e300", set: "expiry_date = 1.5e300", purged: true},
			corruption{name: "expiry real infinity", set: "expiry_date = 9e999", purged: true},
			corruption{name: "expiry max int64", set: "expiry_date = 9223372036854775807", purged: true},
			corruption{name: "expiry min int64", set: "expiry_date = -9223372036854775808", purged: true},
			corruption{name: "expiry year 10000 in µs", set: "expiry_date = ?", args: []any{core.MaxDeadline.UnixMicro() + 1}, purged: true},
			corruption{name: "expiry last microsecond of 9999", set: "expiry_date = ?", args: []any{core.MaxDeadline.UnixMicro()}, same: true},
			// A REAL in range is a time: only non-integral ones stay REAL
			// in an INTEGER column, and the purge could not find them by
			// index among the integers.
			corruption{name: "expiry real in range", set: "expiry_date = expiry_date + 0.5", same: true},
			corruption{name: "version 1.5", set: "version = 1.5"},
			corruption{name: "version text", set: "version = 'abc'"},
			corruption{name: "version 1e19", set: "version = 1e19"},
			corruption{name: "version blob", set: "version = X'01'"},
			corruption{name: "created text", set: "created_at = 'garbage'"},
			corruption{name: "created real 1e300", set: "created_at = 1e300"},
			corruption{name: "created blob", set: "created_at = X'00'"},
			corruption{name: "created -1 µs", set: "created_at = -1", same: true},
			corruption{name: "created NULL", set: "created_at = NULL", same: true},
			corruption{name: "user_key blob", set: "user_key = X'ff00'", same: true},
			corruption{name: "user_key integer", set: "user_key = 42", same: true},
			corruption{name: "data text", set: "data = 'garbage'"},
			corruption{name: "data integer", set: "data = 42"},
			corruption{name: "data real", set: "data = 1.5"},
		)
	}
	return cs
}

// corrupt applies c to the row id.
func corrupt(t *testing.T, db *bun.DB, s *bunstore.Store, id core.ID, c corruption) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if c.pre != "" {
		if _, err := conn.ExecContext(ctx, c.pre); err != nil {
			t.Fatalf("%s: %v", c.pre, err)
		}
		defer conn.ExecContext(ctx, "SET SESSION sql_mode = DEFAULT")
	}
	args := append([]any{table(s)}, c.args...)
	args = append(args, string(id))
	res, err := conn.ExecContext(ctx, "UPDATE ? SET "+c.set+" WHERE id = ?", args...)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s: %d rows changed", c.name, n)
	}
}

// TestCorruptRowsThroughMiddleware overwrites every column of session rows
// with values the store never writes and sends each session's cookie in a
// real HTTP request through httpadapter: never a 500 and never a crash. A
// row that cannot be read whole is "no session" (a removal cookie), and a
// POST with that cookie starts a new session; an odd but readable row is
// served and saves. Then DeleteExpired removes every row whose expiry is
// past or cannot be read, and leaves a live one alone.
func TestCorruptRowsThroughMiddleware(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		h := newHTTPRig(t, s)
		cs := corruptions(db.Dialect().Name())
		ids := make([]core.ID, len(cs))
		for i, c := range cs {
			// A session of user "alice" with n = 1.
			r := h.do("POST", "", "?user=alice")
			if r.code != 200 || r.cookie == nil || r.st.N != 1 {
				t.Fatalf("%s: new session: %v", c.name, r)
			}
			ids[i] = cookieID(t, r.cookie.Value)
			corrupt(t, db, s, ids[i], c)

			got := h.do("GET", r.cookie.Value, "")
			if got.code != 200 {
				t.Errorf("%s: GET: %v; want 200", c.name, got)
				continue
			}
			if c.same {
				if !got.st.Present || got.st.N != 1 || got.cookie != nil {
					t.Errorf("%s: GET: %v; want the session (n=1), no cookie", c.name, got)
				}
				user := got.st.User
				got = h.do("POST", r.cookie.Value, "")
				if got.code != 200 || got.st.N != 2 || got.st.User != user {
					t.Errorf("%s: POST: %v; want n=2 and user %q", c.name, got, user)
				}
				if got = h.do("GET", r.cookie.Value, ""); got.code != 200 || got.st.N != 2 {
					t.Errorf("%s: GET after the save: %v; want n=2", c.name, got)
				}
				continue
			}
			if got.st.Present || !got.removed() {
				t.Errorf("%s: GET: %v; want no session and a removal cookie", c.name, got)
			}
			got = h.do("POST", r.cookie.Value, "")
			if got.code != 200 || got.st.N != 1 || got.cookie == nil || got.cookie.Value == r.cookie.Value || got.removed() {
				t.Errorf("%s: POST: %v; want a new session with n=1", c.name, got)
				continue
			}
			if again := h.do("GET", got.cookie.Value, ""); again.code != 200 || again.st.N != 1 {
				t.Errorf("%s: the new session: %v", c.name, again)
			}
		}
		if !strings.Contains(h.logs.String(), "cannot be read") {
			t.Errorf("no corrupt record was logged:\n%s", h.logs.String())
		}
		if n := len(h.logs.String()); n > 200<<10 {
			t.Errorf("%d bytes of logs for %d requests: an error quotes a whole value", n, 4*len(cs))
		}

		// The purge removes what is expired or unreadable, and nothing live.
		live := h.do("POST", "", "")
		ctx := context.Background()
		if _, err := s.DeleteExpired(ctx, now(), 0); err != nil {
			t.Fatalf("DeleteExpired: %v", err)
		}
		for i, c := range cs {
			if c.purged && rowExists(t, db, s, ids[i]) {
				t.Errorf("%s: DeleteExpired left the row", c.name)
			}
		}
		if !rowExists(t, db, s, cookieID(t, live.cookie.Value)) {
			t.Error("DeleteExpired removed a live session")
		}
	})
}

func rowExists(t testing.TB, db *bun.DB, s *bunstore.Store, id core.ID) bool {
	t.Helper()
	n, err := db.NewSelect().TableExpr("?", table(s)).Where("id = ?", string(id)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestCorruptRowsStoreErrors: Load and Take report a row that cannot be read
// with an error wrapping core.ErrCorruptRecord (never another error, never
// a panic), short enough to log.
func TestCorruptRowsStoreErrors(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		for _, c := range corruptions(db.Dialect().Name()) {
			if c.same {
				continue
			}
			rec := newRecord(t, s, now().Add(time.Hour), "n", 1)
			rec.User, rec.Created = "alice", now()
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			corrupt(t, db, s, rec.ID, c)
			for op, f := range map[string]func() (*core.Record, error){
				"Load": func() (*core.Record, error) { return s.Load(ctx, rec.ID, now()) },
				"Take": func() (*core.Record, error) { return s.Take(ctx, rec.ID, now()) },
			} {
				got, err := f()
				if got != nil || (err != nil && !errors.Is(err, core.ErrCorruptRecord)) {
					t.Errorf("%s: %s: %+v, %v; want nothing, or ErrCorruptRecord", c.name, op, got, err)
				}
				if err != nil && len(err.Error()) > 1000 {
					t.Errorf("%s: %s: a %d-byte error", c.name, op, len(err.Error()))
				}
			}
		}
	})
}

// corruptingHook damages a row right before the store's next UPDATE, as
// another process or an administrator could between a request's load and
// its save.
type corruptingHook struct {
	mu  sync.Mutex
	arm func() // run once before the next UPDATE
}

func (h *corruptingHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	h.mu.Lock()
	f := h.arm
	if strings.HasPrefix(ev.Query, "UPDATE") {
		h.arm = nil
	} else {
		f = nil
	}
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return ctx
}

func (h *corruptingHook) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestCorruptedDuringRequest: a row damaged between a request's load and
// its save is never a 500: the save repairs what it rewrites (data,
// expiry), and a version that no longer matches ends as a conflict with an
// unreadable row, which drops the change (409) and leaves the next request
// without a session.
func TestCorruptedDuringRequest(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		hook := &corruptingHook{}
		s := dbtest.NewStore(t, db.WithQueryHook(hook), bunstore.WithBunQueryHooks())
		h := newHTTPRig(t, s)
		expiry := map[dialect.Name]corruption{
			dialect.PG:     {name: "expiry infinity", set: "expiry_date = 'infinity'"},
			dialect.MySQL:  {name: "expiry zero date", set: "expiry_date = '0000-00-00 00:00:00'", pre: "SET SESSION sql_mode = ''"},
			dialect.SQLite: {name: "expiry text", set: "expiry_date = 'never'"},
		}[db.Dialect().Name()]
		for _, c := range []corruption{
			{name: "data garbage", set: "data = ?", args: []any{[]byte("garbage")}, same: true},
			{name: "data 4 MiB of 0x91", set: "data = ?", args: []any{deepWrapped}, same: true},
			{name: expiry.name, set: expiry.set, pre: expiry.pre, same: true},
			{name: "version -1", set: "version = -1"},
		} {
			first := h.do("POST", "", "")
			cookie := first.cookie.Value
			hook.mu.Lock()
			hook.arm = func() { corrupt(t, db, s, cookieID(t, cookie), c) }
			hook.mu.Unlock()
			r := h.do("POST", cookie, "")
			if c.same {
				if r.code != 200 || r.st.N != 2 {
					t.Errorf("%s during the request: %v; want n=2", c.name, r)
				}
				if r := h.do("GET", cookie, ""); r.code != 200 || r.st.N != 2 {
					t.Errorf("%s during the request, then GET: %v; want the repaired session", c.name, r)
				}
				continue
			}
			if r.code != http.StatusConflict {
				t.Errorf("%s during the request: %v; want 409", c.name, r)
			}
			if r := h.do("GET", cookie, ""); r.code != 200 || r.st.Present {
				t.Errorf("%s during the request, then GET: %v; want no session", c.name, r)
			}
		}
	})
}

package bunstoretests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// captureHook remembers the last statement a store ran (with
// WithBunQueryHooks, whose events carry no arguments).
type captureHook struct {
	mu    sync.Mutex
	query string
}

func (h *captureHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (h *captureHook) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.query = ev.Query
}

func (h *captureHook) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.query
}

// timeArg is t as the store passes it for its dialect's expiry column.
func timeArg(d dialect.Name, t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	switch d {
	case dialect.MySQL:
		return t.Format("2006-01-02 15:04:05.000000")
	case dialect.SQLite:
		return t.UnixMicro()
	}
	return t
}

// userRows is how many sessions TestUserSessionsUseIndex stores:
// SQLSESSIONS_USER_ROWS, or 100,000 (BENCHMARKS.md's figures use 1,000,000;
// under wazero, where filling takes 100 times longer, 20,000).
func userRows(t *testing.T) int {
	if v := os.Getenv("SQLSESSIONS_USER_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2000 {
			t.Fatalf("SQLSESSIONS_USER_ROWS=%q: want a number >= 2000", v)
		}
		return n
	}
	if noSockets {
		return 20_000
	}
	return 100_000
}

// fillUsers stores n sessions in one statement: rows 1..1000 belong to
// user "target", every third other row to no user, the rest to 200,000
// users u<k> (a few sessions each). Ids are the row number, zero-padded to
// 22 characters like real ids.
func fillUsers(t *testing.T, db *bun.DB, s *bunstore.Store, from, to int) {
	t.Helper()
	ctx := context.Background()
	blob := []byte{0x81, 0xa1, 'n', 0x01} // {"n": 1}
	exp := oldExpiry(db.Dialect().Name(), time.Now().Add(24*time.Hour))
	created := oldExpiry(db.Dialect().Name(), time.Now())
	const user = "CASE WHEN i <= 1000 THEN 'target' WHEN i % 3 = 0 THEN NULL ELSE 'u' || (i % 200000) END"
	var err error
	switch db.Dialect().Name() {
	case dialect.PG:
		_, err = db.ExecContext(ctx, "INSERT INTO ? (id, data, expiry_date, version, created_at, user_key) SELECT lpad(i::text, 22, '0'), ?, ?, 1, ?, "+user+" FROM generate_series(?::int, ?::int) AS i",
			table(s), blob, exp, created, from, to)
	case dialect.MySQL:
		mysqlUser := strings.ReplaceAll(user, "'u' || (i % 200000)", "CONCAT('u', i % 200000)")
		_, err = db.ExecContext(ctx, "INSERT INTO ? (id, data, expiry_date, version, created_at, user_key) SELECT LPAD(i, 22, '0'), ?, ?, 1, ?, "+mysqlUser+" FROM ("+mysqlSeq(to)+") AS x WHERE i BETWEEN ? AND ?",
			table(s), blob, exp, created, from, to)
	default:
		_, err = db.ExecContext(ctx, "WITH RECURSIVE g(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM g WHERE i < ?) INSERT INTO ? (id, data, expiry_date, version, created_at, user_key) SELECT printf('%022d', i), ?, ?, 1, ?, "+user+" FROM g",
			from, to, table(s), blob, exp, created)
	}
	if err != nil {
		t.Fatalf("filling rows %d-%d: %v", from, to, err)
	}
}

// TestUserSessionsUseIndex fills a table with userRows sessions (1,000 of
// them of one user), checks with the database's own plan that the exact
// SELECT of UserSessions and DELETE of DeleteUserSessions read the user_key
// index, and times both for that user.
func TestUserSessionsUseIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large table")
	}
	n := userRows(t)
	for _, d := range dbtest.Dialects() {
		if d.Name == "postgres-libpq" {
			continue // the same server and plans as postgres
		}
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			h := &captureHook{}
			s := dbtest.NewStore(t, db.WithQueryHook(h), bunstore.WithBunQueryHooks())
			ctx := context.Background()
			start := time.Now()
			fillUsers(t, db, s, 1, n)
			fill := time.Since(start)
			var analyze string
			switch db.Dialect().Name() {
			case dialect.PG:
				analyze = "ANALYZE ?"
			case dialect.MySQL:
				analyze = "ANALYZE TABLE ?"
			}
			if analyze != "" {
				if _, err := db.ExecContext(ctx, analyze, table(s)); err != nil {
					t.Fatal(err)
				}
			}

			list, err := s.UserSessions(ctx, "target", now())
			if err != nil || len(list) != 1000 {
				t.Fatalf("UserSessions: %d sessions, %v; want 1000", len(list), err)
			}
			checkUsesUserIndex(t, db, s, h.last(), []any{"target", timeArg(db.Dialect().Name(), now())})
			if _, err := s.DeleteUserSessions(ctx, "nobody", ""); err != nil {
				t.Fatal(err)
			}
			checkUsesUserIndex(t, db, s, h.last(), []any{"target", ""})

			// Timings: the median of 5 listings, and of 5 revocations,
			// putting the user's 1,000 rows back between them.
			var lists, deletes []time.Duration
			for range 5 {
				t0 := time.Now()
				list, err := s.UserSessions(ctx, "target", now())
				lists = append(lists, time.Since(t0))
				if err != nil || len(list) != 1000 {
					t.Fatalf("UserSessions: %d, %v", len(list), err)
				}
				t0 = time.Now()
				got, err := s.DeleteUserSessions(ctx, "target", list[0].ID)
				deletes = append(deletes, time.Since(t0))
				if err != nil || got != 999 {
					t.Fatalf("DeleteUserSessions: %d, %v; want 999", got, err)
				}
				if _, err := db.ExecContext(ctx, "DELETE FROM ? WHERE user_key = 'target'", table(s)); err != nil {
					t.Fatal(err)
				}
				fillUsers(t, db, s, 1, 1000)
			}
			slices.Sort(lists)
			slices.Sort(deletes)
			t.Logf("%s, %d rows (filled in %v): UserSessions of 1,000 sessions %v (median of 5, min %v); DeleteUserSessions of 999 %v (min %v)",
				d.Name, n, fill.Round(time.Millisecond), lists[2].Round(10*time.Microsecond), lists[0].Round(10*time.Microsecond),
				deletes[2].Round(10*time.Microsecond), deletes[0].Round(10*time.Microsecond))
		})
	}
}

// checkUsesUserIndex fails unless the database plans query (a store
// statement, with its arguments) through the user_key index.
func checkUsesUserIndex(t *testing.T, db *bun.DB, s *bunstore.Store, query string, args []any) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	verb, _, _ := strings.Cut(query, " ")
	switch db.Dialect().Name() {
	case dialect.PG:
		// A prepared statement may run a generic plan (built without the
		// arguments' values) after five executions: check both.
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = "+mode); err != nil {
				t.Fatal(err)
			}
			var plan string
			if err := conn.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&plan); err != nil {
				t.Fatalf("EXPLAIN %s: %v", query, err)
			}
			idx := pgIndexes(t, plan)
			if !slices.Contains(idx, s.TableName()+"_user_key_idx") {
				t.Errorf("%s (%s) does not use %s_user_key_idx: indexes %v\n%s", verb, mode, s.TableName(), idx, plan)
			}
		}
	case dialect.MySQL:
		var plan string
		if err := conn.QueryRowContext(ctx, "EXPLAIN FORMAT=JSON "+query, args...).Scan(&plan); err != nil {
			t.Fatalf("EXPLAIN %s: %v", query, err)
		}
		if !strings.Contains(plan, `"key": "user_key_idx"`) {
			t.Errorf("%s does not use user_key_idx:\n%s", verb, plan)
		}
	default:
		rows, err := conn.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatalf("EXPLAIN QUERY PLAN %s: %v", query, err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		p := strings.Join(plan, "\n")
		if !strings.Contains(p, "INDEX "+s.TableName()+"_user_key_idx (user_key=?)") {
			t.Errorf("%s does not search %s_user_key_idx:\n%s", verb, s.TableName(), p)
		}
	}
}

// pgIndexes lists the "Index Name" of every node of a JSON plan.
func pgIndexes(t *testing.T, plan string) []string {
	t.Helper()
	var doc []struct{ Plan map[string]any }
	if err := json.Unmarshal([]byte(plan), &doc); err != nil || len(doc) == 0 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	var out []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if name, ok := n["Index Name"].(string); ok {
			out = append(out, name)
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			if m, ok := k.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(doc[0].Plan)
	return out
}

// mysqlSeq is a MySQL query of one column i holding 1 to the next power of
// 10 of at least to: cross joins of digits (a recursive CTE is cut at 1,000
// rows by MariaDB's max_recursive_iterations).
func mysqlSeq(to int) string {
	const digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var terms, tables []string
	for k, p := 0, 1; k < len(strconv.Itoa(to)); k, p = k+1, p*10 {
		terms = append(terms, fmt.Sprintf("%d*d%d.d", p, k))
		tables = append(tables, fmt.Sprintf("%s d%d", digits, k))
	}
	return "SELECT 1 + " + strings.Join(terms, " + ") + " AS i FROM " + strings.Join(tables, ", ")
}

package bunstoretests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// TestSchemaTypes pins the per-dialect column types of DESIGN.md's table,
// and the index on expiry_date, as the servers report them.
func TestSchemaTypes(t *testing.T) {
	ctx := context.Background()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := dbtest.OpenPostgres(t)
		s := dbtest.NewStore(t, db)
		got := columnTypes(t, db, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", s.SchemaName(), s.TableName())
		want := map[string]string{"id": "text", "data": "bytea", "expiry_date": "timestamp with time zone", "version": "bigint",
			"created_at": "timestamp with time zone", "user_key": "text"}
		checkTypes(t, got, want)
		var idx string
		if err := db.QueryRowContext(ctx, "SELECT indexdef FROM pg_indexes WHERE schemaname = ? AND tablename = ? AND indexdef LIKE '%(expiry_date)%'", s.SchemaName(), s.TableName()).Scan(&idx); err != nil {
			t.Fatalf("no index on expiry_date: %v", err)
		}
		// Ids compare byte by byte, whatever the database's collation, and
		// a lookup by id (an argument of the default collation) still uses
		// the primary key.
		var coll string
		if err := db.QueryRowContext(ctx, "SELECT collation_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? AND column_name = 'id'", s.SchemaName(), s.TableName()).Scan(&coll); err != nil || coll != "C" {
			t.Errorf("id collation %q, %v; want C", coll, err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.QueryContext(ctx, "EXPLAIN SELECT data FROM ? WHERE id = ? AND expiry_date > now()", bun.Ident(s.SchemaName()+"."+s.TableName()), string(newID(t)))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		rows.Close()
		if p := strings.Join(lines, "\n"); !strings.Contains(p, "Index Scan using "+s.TableName()+"_pkey") {
			t.Errorf("a lookup by id does not use the primary key:\n%s", p)
		}
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		db := dbtest.OpenMySQL(t)
		s := dbtest.NewStore(t, db)
		got := columnTypes(t, db, "SELECT column_name, CONCAT(column_type, ' ', COALESCE(collation_name, '')) FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", s.SchemaName(), s.TableName())
		want := map[string]string{"id": "varchar(128) ascii_bin", "data": "longblob", "expiry_date": "datetime(6)", "version": "bigint(20)",
			"created_at": "datetime(6)", "user_key": "varbinary(255)"}
		if strings.HasPrefix(got["version"], "bigint") {
			want["version"] = got["version"] // MySQL 8 drops the display width
		}
		checkTypes(t, got, want)
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? AND column_name = 'expiry_date' AND seq_in_index = 1", s.SchemaName(), s.TableName()).Scan(&n); err != nil || n != 1 {
			t.Fatalf("index on expiry_date: %d, %v", n, err)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db := dbtest.OpenSQLite(t)
		s := dbtest.NewStore(t, db)
		got := columnTypes(t, db, "SELECT name, type FROM pragma_table_info(?)", s.TableName())
		checkTypes(t, got, map[string]string{"id": "text", "data": "blob", "expiry_date": "integer", "version": "integer", "created_at": "integer", "user_key": "text"})
		// Stored as an integer (numeric comparisons), in microseconds.
		exp := time.Date(2040, 1, 2, 3, 4, 5, 678901000, time.UTC)
		rec := newRecord(t, s, exp, "k", "v")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		var typ string
		var v int64
		if err := db.QueryRowContext(ctx, "SELECT typeof(expiry_date), expiry_date FROM ? WHERE id = ?", bun.Ident(s.TableName()), string(rec.ID)).Scan(&typ, &v); err != nil {
			t.Fatal(err)
		}
		if typ != "integer" || v != exp.UnixMicro() {
			t.Fatalf("expiry stored as %s %d, want integer %d", typ, v, exp.UnixMicro())
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i WHERE i.name = 'expiry_date'", s.TableName()).Scan(&n); err != nil || n != 1 {
			t.Fatalf("index on expiry_date: %d, %v", n, err)
		}
	})
}

// columnTypes runs query, which yields (column name, type) rows, and maps
// each lower-cased name to its lower-cased, trimmed type.
func columnTypes(t *testing.T, db *bun.DB, query string, args ...any) map[string]string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			t.Fatal(err)
		}
		got[strings.ToLower(c)] = strings.TrimSpace(strings.ToLower(ty))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func checkTypes(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("columns %v, want %v", got, want)
	}
	for c, w := range want {
		if got[c] != w {
			t.Errorf("column %s: %q, want %q", c, got[c], w)
		}
	}
}

// errHook records the errors a bun query hook sees.
type errHook struct{ errs []error }

func (h *errHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (h *errHook) AfterQuery(_ context.Context, ev *bun.QueryEvent)                   { h.errs = append(h.errs, ev.Err) }

// TestQueryHookSeesErrors: with WithBunQueryHooks, a hook on the *bun.DB
// gets the statement's error.
func TestQueryHookSeesErrors(t *testing.T) {
	db := dbtest.OpenSQLite(t)
	h := &errHook{}
	s, err := bunstore.New(db.WithQueryHook(h), bunstore.WithBunQueryHooks())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, loadErr := s.Load(context.Background(), newID(t), time.Now()) // no table yet
	if loadErr == nil || len(h.errs) != 1 || h.errs[0] == nil || !errors.Is(loadErr, h.errs[0]) {
		t.Fatalf("Load error %v; hook saw %v", loadErr, h.errs)
	}
}

package pgnotify_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/pgnotify"
)

func countTriggers(t *testing.T, c *pgx.Conn, schema, table string) (triggers, functions int) {
	t.Helper()
	ctx := context.Background()
	err := c.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname LIKE 'sqlsessions_notify%'`,
		pgx.Identifier{schema, table}.Sanitize()).Scan(&triggers)
	if err != nil {
		t.Fatal(err)
	}
	err = c.QueryRow(ctx, `SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1 AND p.proname LIKE 'sqlsessions_notify%'`, schema).Scan(&functions)
	if err != nil {
		t.Fatal(err)
	}
	return triggers, functions
}

// TestInstallConcurrently: processes starting together all succeed and
// leave one set of triggers per table, also for two tables of one schema
// (which share the trigger function).
func TestInstallConcurrently(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	const n = 8
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = d.admin()
	}
	if _, err := conns[0].Exec(ctx, "CREATE TABLE "+pgx.Identifier{d.schema, "second"}.Sanitize()+" (LIKE "+pgx.Identifier{d.schema, "session"}.Sanitize()+")"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range conns {
		wg.Go(func() { errs[i] = pgnotify.Install(ctx, c, d.schema, []string{"session", "second"}[i%2]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Install %d: %v", i, err)
		}
	}
	for _, table := range []string{"session", "second"} {
		if tr, fn := countTriggers(t, conns[0], d.schema, table); tr != 3 || fn != 2 {
			t.Errorf("%s after %d concurrent installs: %d triggers, %d functions; want 3 and 2", table, n, tr, fn)
		}
	}
}

// TestInstallTakesNoTableLockWhenInstalled: a process starting while
// requests hold the table's row locks does not wait for them (nor make the
// next requests wait behind it) once the triggers exist.
func TestInstallTakesNoTableLockWhenInstalled(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := d.admin()
	if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	rec := newRecord(t, d.store, "")
	busy := d.admin()
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// ROW EXCLUSIVE, which CREATE TRIGGER's SHARE ROW EXCLUSIVE waits for.
	if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET version = version WHERE id = $1", pgx.Identifier{d.schema, "session"}.Sanitize()), string(rec.ID)); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := pgnotify.Install(tctx, c, d.schema, "session"); err != nil {
		t.Fatalf("Install with the triggers in place, while a transaction writes the table: %v", err)
	}
}

func TestInstallErrors(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := d.admin()
	if err := pgnotify.Install(ctx, c, d.schema, "nosuchtable"); !errors.Is(err, pgnotify.ErrNoTable) {
		t.Errorf("Install on a missing table: %v, want ErrNoTable", err)
	}
	for _, name := range []string{"x; DROP TABLE y", `a"b`, "1abc", strings.Repeat("a", 64)} {
		if err := pgnotify.Install(ctx, c, d.schema, name); err == nil || errors.Is(err, pgnotify.ErrNoTable) {
			t.Errorf("Install(table %q): %v, want an invalid-name error", name, err)
		}
		if err := pgnotify.Install(ctx, c, name, "session"); err == nil || errors.Is(err, pgnotify.ErrNoTable) {
			t.Errorf("Install(schema %q): %v, want an invalid-name error", name, err)
		}
	}
	if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{d.schema, "session"}.Sanitize()
	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" DISABLE TRIGGER sqlsessions_notify_v1_delete"); err != nil {
		t.Fatal(err)
	}
	err := pgnotify.Install(ctx, c, d.schema, "session")
	if !errors.Is(err, pgnotify.ErrTriggerDisabled) || !strings.Contains(err.Error(), "sqlsessions_notify_v1_delete") {
		t.Errorf("Install with a disabled trigger: %v, want ErrTriggerDisabled naming it", err)
	}
	var enabled bool
	if err := c.QueryRow(ctx, "SELECT tgenabled <> 'D' FROM pg_trigger WHERE tgname = 'sqlsessions_notify_v1_delete' AND tgrelid = to_regclass($1)", table).Scan(&enabled); err != nil || enabled {
		t.Errorf("Install re-enabled a trigger an operator disabled (enabled %v, %v)", enabled, err)
	}
}

// TestInstallRepairs: an outdated function body is replaced, a trigger of
// ours calling another function is recreated, and so are triggers left
// pointing at another channel by a table rename.
func TestInstallRepairs(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := d.admin()
	if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	fn := pgx.Identifier{d.schema, "sqlsessions_notify_v1"}.Sanitize()
	if _, err := c.Exec(ctx, "CREATE OR REPLACE FUNCTION "+fn+"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"); err != nil {
		t.Fatal(err)
	}
	if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	var src string
	if err := c.QueryRow(ctx, "SELECT prosrc FROM pg_proc WHERE oid = $1::regprocedure", fn+"()").Scan(&src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, "pg_notify") {
		t.Errorf("Install left an outdated function body: %s", src)
	}

	table := pgx.Identifier{d.schema, "session"}.Sanitize()
	if _, err := c.Exec(ctx, "DROP TRIGGER sqlsessions_notify_v1_update ON "+table); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TRIGGER sqlsessions_notify_v1_update AFTER UPDATE ON "+table+" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "+fn+"('"+pgnotify.Channel(d.schema, "session")+"')"); err != nil {
		t.Fatal(err)
	}
	if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	var calls string
	if err := c.QueryRow(ctx, "SELECT t.tgfoid::regproc::text FROM pg_trigger t WHERE t.tgrelid = to_regclass($1) AND t.tgname = 'sqlsessions_notify_v1_update'", table).Scan(&calls); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(calls, "sqlsessions_notify_row_v1") {
		t.Errorf("the update trigger calls %s after Install, want the row-level function", calls)
	}

	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" RENAME TO renamed"); err != nil {
		t.Fatal(err)
	}
	if err := pgnotify.Install(ctx, c, d.schema, "renamed"); err != nil {
		t.Fatal(err)
	}
	var args []string
	rows, err := c.Query(ctx, "SELECT tgargs FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname LIKE 'sqlsessions_notify%'",
		pgx.Identifier{d.schema, "renamed"}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a []byte
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		args = append(args, string(a))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := pgnotify.Channel(d.schema, "renamed") + "\x00"
	if len(args) != 3 || slices.ContainsFunc(args, func(a string) bool { return a != want }) {
		t.Errorf("after a rename, the triggers notify %q; want 3 on %q", args, want)
	}
}

func TestUninstall(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := d.admin()
	if err := pgnotify.Uninstall(ctx, c, d.schema, "session"); err != nil {
		t.Fatalf("Uninstall with nothing installed: %v", err)
	}
	for range 2 {
		if err := pgnotify.Install(ctx, c, d.schema, "session"); err != nil {
			t.Fatal(err)
		}
		if err := pgnotify.Uninstall(ctx, c, d.schema, "session"); err != nil {
			t.Fatal(err)
		}
		if tr, fn := countTriggers(t, c, d.schema, "session"); tr != 0 || fn != 0 {
			t.Errorf("after Uninstall: %d triggers, %d functions", tr, fn)
		}
	}
	// A function another table still uses stays.
	if _, err := c.Exec(ctx, "CREATE TABLE "+pgx.Identifier{d.schema, "second"}.Sanitize()+" (LIKE "+pgx.Identifier{d.schema, "session"}.Sanitize()+")"); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"session", "second"} {
		if err := pgnotify.Install(ctx, c, d.schema, tb); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgnotify.Uninstall(ctx, c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	if tr, fn := countTriggers(t, c, d.schema, "second"); tr != 3 || fn != 2 {
		t.Errorf("Uninstall of one table broke another's: %d triggers, %d functions", tr, fn)
	}
}

// listen returns a connection listening on the table's channel.
func listen(t *testing.T, d *testDB) *pgx.Conn {
	t.Helper()
	c := d.admin()
	if err := pgnotify.Install(context.Background(), c, d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "LISTEN "+pgx.Identifier{pgnotify.Channel(d.schema, "session")}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return c
}

// next returns the next payload, failing the test after 5 s.
func next(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("waiting for a notification: %v", err)
	}
	return n.Payload
}

// TestNotifications pins what each store operation sends.
func TestNotifications(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := listen(t, d)
	s := d.store
	now := time.Now().UTC()

	rec := newRecord(t, s, "alice")
	rec.Data["k"] = []byte{2}
	if err := s.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// Create sent nothing: the first payload is the save's.
	if p := next(t, c); p != string(rec.ID) {
		t.Errorf("Save sent %q, want the id %s", p, rec.ID)
	}
	if err := s.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if p := next(t, c); p != string(rec.ID) {
		t.Errorf("Delete sent %q", p)
	}
	rec = newRecord(t, s, "alice")
	if got, err := s.Take(ctx, rec.ID, now); err != nil || got == nil {
		t.Fatalf("Take: %v, %v", got, err)
	}
	if p := next(t, c); p != string(rec.ID) {
		t.Errorf("Take sent %q", p)
	}
	a, b := newRecord(t, s, "bob"), newRecord(t, s, "bob")
	if n, err := s.DeleteUserSessions(ctx, "bob", ""); err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions: %d, %v", n, err)
	}
	if p := strings.Fields(next(t, c)); len(p) != 2 || !slices.Contains(p, string(a.ID)) || !slices.Contains(p, string(b.ID)) {
		t.Errorf("DeleteUserSessions sent %q, want %s and %s in one payload", p, a.ID, b.ID)
	}

	// A purge of 1000 expired rows sends nothing: the next payload is the
	// marker's.
	table := pgx.Identifier{d.schema, "session"}.Sanitize()
	if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id, data, expiry_date) SELECT 'expired' || i, '\\x80', now() - interval '1 minute' FROM generate_series(1, 1000) i"); err != nil {
		t.Fatal(err)
	}
	// Updating expired rows sends nothing either.
	if _, err := c.Exec(ctx, "UPDATE "+table+" SET version = version + 1 WHERE id LIKE 'expired%'"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpired(ctx, time.Now().UTC(), 0); err != nil || n != 1000 {
		t.Fatalf("DeleteExpired: %d, %v", n, err)
	}
	marker := newRecord(t, s, "")
	if err := s.Delete(ctx, marker.ID); err != nil {
		t.Fatal(err)
	}
	if p := next(t, c); p != string(marker.ID) {
		t.Errorf("after an update and a purge of 1000 expired rows, the next payload is %.60q..., want only the marker's", p)
	}

	// Deleting 1000 live sessions in one statement sends every id once,
	// in batches under the 8000-byte payload limit.
	live := map[string]bool{}
	for range 1000 {
		live[string(newRecord(t, s, "many").ID)] = true
	}
	if n, err := s.DeleteUserSessions(ctx, "many", ""); err != nil || n != 1000 {
		t.Fatalf("DeleteUserSessions: %d, %v", n, err)
	}
	payloads := 0
	for len(live) > 0 {
		p := next(t, c)
		payloads++
		if len(p) >= 8000 {
			t.Errorf("a payload of %d bytes", len(p))
		}
		for _, id := range strings.Fields(p) {
			if !live[id] {
				t.Fatalf("payload %d names %q: not one of the deleted sessions, or twice", payloads, id)
			}
			delete(live, id)
		}
	}
	t.Logf("1000 live sessions deleted in one statement: %d notifications", payloads)
	if payloads > 5 {
		t.Errorf("%d notifications for 1000 ids; want batches of about 300", payloads)
	}

	if _, err := c.Exec(ctx, "TRUNCATE "+table); err != nil {
		t.Fatal(err)
	}
	if p := next(t, c); p != "*" {
		t.Errorf("TRUNCATE sent %q, want *", p)
	}
	// An id longer than any core id makes its batch "*".
	if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id, data, expiry_date) VALUES (repeat('x', 1000), '\\x80', now() + interval '1 hour')"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "UPDATE "+table+" SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	if p := next(t, c); p != "*" {
		t.Errorf("updating a 1000-byte id sent %.40q, want *", p)
	}
	if _, err := c.Exec(ctx, "DELETE FROM "+table); err != nil {
		t.Fatal(err)
	}
	if p := next(t, c); p != "*" {
		t.Errorf("deleting a 1000-byte id sent %.40q, want *", p)
	}
}

package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Default names of the session table, those of bunstore's PostgreSQL store.
const (
	DefaultSchemaName = "tower_sessions"
	DefaultTableName  = "session"
)

// ErrNoTable is wrapped by the error Install returns when the session table
// does not exist: run the store's Migrate first.
var ErrNoTable = errors.New("pgnotify: the session table does not exist")

// ErrTriggerDisabled is wrapped by the error Install returns when one of its
// triggers exists but was disabled (ALTER TABLE ... DISABLE TRIGGER).
// Install leaves it alone, and a Listener does not report the feed up while
// it is disabled: caches keep the TTL bound.
var ErrTriggerDisabled = errors.New("pgnotify: a notification trigger is disabled")

// The payload format and the names below go together: a change of format
// takes new names (v2), so that an old listener never misreads a new payload
// during a rolling upgrade.
const (
	// maxIDBytes bounds an id sent by name: batches are cut at about
	// batchBytes, so a batch stays under PostgreSQL's 8000-byte payload
	// limit. A longer id (never one of core's 22-byte ids) is sent as "*",
	// which evicts everything.
	maxIDBytes = 900
	batchBytes = 7000
)

// function is a trigger function Install creates in the table's schema.
type function struct{ name, body string }

// rowFunc serves the UPDATE trigger, a row-level one: a save updates one
// row, and per row this costs the writer less than a statement-level
// trigger's transition table (measured: BENCHMARKS.md). The trigger's WHEN
// skips rows that had expired already: no cache can serve them.
var rowFunc = function{"sqlsessions_notify_row_v1", fmt.Sprintf(`
BEGIN
	PERFORM pg_notify(TG_ARGV[0], CASE WHEN octet_length(OLD.id) > %d THEN '*' ELSE OLD.id END);
	RETURN NULL;
END
`, maxIDBytes)}

// statementFunc serves the DELETE and TRUNCATE triggers, statement-level
// ones: a DELETE may remove many rows (a user's sessions, a purge), whose
// ids it sends in batches of at most about 7000 bytes, joined by spaces,
// leaving out the rows that had expired already (so a purge of expired
// sessions sends nothing). TRUNCATE sends "*".
var statementFunc = function{"sqlsessions_notify_v1", fmt.Sprintf(`
DECLARE
	batch text;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify(TG_ARGV[0], '*');
		RETURN NULL;
	END IF;
	FOR batch IN
		SELECT CASE WHEN bool_or(octet_length(id) > %d) THEN '*' ELSE string_agg(id, ' ') END
		FROM (SELECT id, sum(octet_length(id) + 1) OVER (ROWS UNBOUNDED PRECEDING) / %d AS grp
		      FROM old_rows WHERE expiry_date > now()) AS live
		GROUP BY grp
	LOOP
		PERFORM pg_notify(TG_ARGV[0], batch);
	END LOOP;
	RETURN NULL;
END
`, maxIDBytes, batchBytes)}

var functions = []function{rowFunc, statementFunc}

// trigger is one of the triggers Install creates on the table.
type trigger struct {
	name string
	fn   function
	// definition follows "CREATE TRIGGER name": %[1]s is the table,
	// %[2]s the function, %[3]s the channel.
	definition string
}

// updateTrigger is the one trigger a save fires, and the one a feed of
// deletions (InstallDeletes, Options.DeletesOnly) leaves out.
var updateTrigger = trigger{"sqlsessions_notify_v1_update", rowFunc,
	"AFTER UPDATE ON %[1]s FOR EACH ROW WHEN (OLD.expiry_date > now()) EXECUTE FUNCTION %[2]s('%[3]s')"}

// deleteTriggers are the triggers of a feed of deletions.
var deleteTriggers = []trigger{
	{"sqlsessions_notify_v1_delete", statementFunc,
		"AFTER DELETE ON %[1]s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %[2]s('%[3]s')"},
	{"sqlsessions_notify_v1_truncate", statementFunc,
		"AFTER TRUNCATE ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION %[2]s('%[3]s')"},
}

// triggers are the triggers of the whole feed.
var triggers = append([]trigger{updateTrigger}, deleteTriggers...)

// triggerNames are the names of triggers.
var triggerNames = names(triggers)

func names(trs []trigger) []string {
	var names []string
	for _, tr := range trs {
		names = append(names, tr.name)
	}
	return names
}

// table names one session table and what Install puts on it.
type table struct {
	schema, name string
}

// Channel returns the notification channel of the session table
// schema.table: "sqlsessions_v1_" and a hash of the names, so that several
// tables in one database use separate channels and the name stays within
// PostgreSQL's 63 bytes.
func Channel(schema, table string) string {
	h := fnv.New64a()
	h.Write([]byte(schema + "." + table))
	return fmt.Sprintf("sqlsessions_v1_%016x", h.Sum64())
}

func (t table) channel() string { return Channel(t.schema, t.name) }

// qualified is the table's quoted, schema-qualified name.
func (t table) qualified() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

func (t table) function(f function) string { return pgx.Identifier{t.schema, f.name}.Sanitize() }

// triggerArgs is pg_trigger.tgargs of a trigger created by Install: its one
// argument, the channel, NUL-terminated.
func (t table) triggerArgs() []byte { return []byte(t.channel() + "\x00") }

func (t table) createTrigger(tr trigger) string {
	return "CREATE TRIGGER " + pgx.Identifier{tr.name}.Sanitize() + " " + fmt.Sprintf(tr.definition, t.qualified(), t.function(tr.fn), t.channel())
}

// lockKey names the advisory lock that serialises Install and Uninstall in
// one schema, whose tables share the trigger function.
func (t table) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("sqlsessions/pgnotify install " + t.schema))
	return int64(h.Sum64())
}

func newTable(schema, name string) (table, error) {
	if schema == "" {
		schema = DefaultSchemaName
	}
	if name == "" {
		name = DefaultTableName
	}
	for _, n := range []struct{ kind, name string }{{"schema", schema}, {"table", name}} {
		if err := validName(n.kind, n.name); err != nil {
			return table{}, err
		}
	}
	return table{schema, name}, nil
}

// validName accepts what bunstore accepts: a plain identifier of at most 63
// bytes, so the names of any bunstore table work and nothing else reaches
// SQL (it is quoted anyway).
func validName(kind, name string) error {
	if len(name) > 63 {
		return fmt.Errorf("pgnotify: %s name %q is longer than 63 bytes", kind, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' && i > 0) {
			return fmt.Errorf("pgnotify: %s name %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", kind, name)
		}
	}
	return nil
}

// Install creates, on the session table schema.table ("" for either: the
// defaults, tower_sessions.session), the triggers that send a notification
// on Channel(schema, table) for every UPDATE, DELETE and TRUNCATE, and the
// trigger functions they call (in the same schema). It is idempotent and
// safe to run from several processes at once, for one table or several in
// one schema (a transaction-level advisory lock serialises it); when
// everything is in place it changes nothing and takes no lock on the table. The table must exist (ErrNoTable otherwise).
//
// A Listener runs Install itself on every connection unless
// Options.SkipInstall is set; call Install directly to install with another
// role, e.g. at deployment. The role needs the TRIGGER privilege on the table
// and CREATE on the schema.
func Install(ctx context.Context, conn *pgx.Conn, schema, table string) error {
	return install(ctx, conn, schema, table, triggers)
}

// InstallDeletes is Install for a feed of deletions only
// (Options.DeletesOnly): it creates the DELETE and TRUNCATE triggers and
// their function, not the UPDATE trigger, so saves notify nobody and pay
// nothing for the feed. It leaves an UPDATE trigger that Install created in
// place (a process with the whole feed may need it): run Uninstall first to
// move a table from the whole feed to deletions only.
func InstallDeletes(ctx context.Context, conn *pgx.Conn, schema, table string) error {
	return install(ctx, conn, schema, table, deleteTriggers)
}

func install(ctx context.Context, conn *pgx.Conn, schema, table string, trs []trigger) error {
	t, err := newTable(schema, table)
	if err != nil {
		return err
	}
	var disabled []string
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) (err error) {
		disabled, err = t.install(ctx, tx, trs)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgnotify: installing the triggers on %s: %w", t.qualified(), err)
	}
	if len(disabled) > 0 {
		return fmt.Errorf("%w: %s on %s (ALTER TABLE ... ENABLE TRIGGER to use it, or stop the listeners)", ErrTriggerDisabled, strings.Join(disabled, ", "), t.qualified())
	}
	return nil
}

// install creates what of trs is missing and returns the triggers found
// disabled.
func (t table) install(ctx context.Context, tx pgx.Tx, trs []trigger) (disabled []string, err error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", t.lockKey()); err != nil {
		return nil, err
	}
	var oid *uint32
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1)::oid", t.qualified()).Scan(&oid); err != nil {
		return nil, err
	}
	if oid == nil {
		return nil, fmt.Errorf("%w: %s (run the store's Migrate first)", ErrNoTable, t.qualified())
	}
	for _, f := range functions {
		if !slices.ContainsFunc(trs, func(tr trigger) bool { return tr.fn == f }) {
			continue
		}
		var src *string
		err = tx.QueryRow(ctx, `SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = $1 AND p.proname = $2 AND p.pronargs = 0`, t.schema, f.name).Scan(&src)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		if src == nil || *src != f.body {
			q := fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $pgnotify$%s$pgnotify$", t.function(f), f.body)
			if _, err := tx.Exec(ctx, q); err != nil {
				return nil, err
			}
		}
	}
	type found struct {
		args    []byte
		fn      string // the function it calls, if in the table's schema
		enabled bool
	}
	existing := map[string]found{}
	rows, err := tx.Query(ctx, `SELECT t.tgname, t.tgargs, CASE WHEN n.nspname = $3 THEN p.proname ELSE '' END, t.tgenabled <> 'D'
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE t.tgrelid = $1 AND t.tgname = ANY($2)`, *oid, names(trs), t.schema)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		var f found
		if err := rows.Scan(&name, &f.args, &f.fn, &f.enabled); err != nil {
			rows.Close()
			return nil, err
		}
		existing[name] = f
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, tr := range trs {
		f, ok := existing[tr.name]
		switch {
		case ok && !f.enabled:
			disabled = append(disabled, tr.name)
			continue
		case ok && string(f.args) == string(t.triggerArgs()) && f.fn == tr.fn.name:
			continue
		case ok:
			// Made for another channel (the table was renamed) or by
			// another version: replace it.
			if _, err := tx.Exec(ctx, fmt.Sprintf("DROP TRIGGER %s ON %s", pgx.Identifier{tr.name}.Sanitize(), t.qualified())); err != nil {
				return nil, err
			}
		}
		if _, err := tx.Exec(ctx, t.createTrigger(tr)); err != nil {
			return nil, err
		}
	}
	return disabled, nil
}

// Uninstall drops the triggers Install created on schema.table ("" for
// either: the defaults), and the trigger functions when no other table uses
// them. Every save pays for the notification while the triggers exist, even
// with no listener: uninstall them when you stop using the feed. Safe to run
// when nothing is installed.
func Uninstall(ctx context.Context, conn *pgx.Conn, schema, table string) error {
	t, err := newTable(schema, table)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", t.lockKey()); err != nil {
			return err
		}
		var oid *uint32
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1)::oid", t.qualified()).Scan(&oid); err != nil {
			return err
		}
		if oid != nil {
			for _, name := range triggerNames {
				if _, err := tx.Exec(ctx, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgx.Identifier{name}.Sanitize(), t.qualified())); err != nil {
					return err
				}
			}
		}
		for _, f := range functions {
			var users int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
				JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2`, t.schema, f.name).Scan(&users); err != nil {
				return err
			}
			if users == 0 {
				if _, err := tx.Exec(ctx, fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", t.function(f))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgnotify: uninstalling the triggers on %s: %w", t.qualified(), err)
	}
	return nil
}

// healthy reports whether the triggers named exist, are enabled and notify
// this table's channel: what must hold for the feed to be up.
func (t table) healthy(ctx context.Context, conn *pgx.Conn, names []string) error {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1)
		AND tgname = ANY($2) AND tgenabled <> 'D' AND tgargs = $3`, t.qualified(), names, t.triggerArgs()).Scan(&n)
	if err != nil {
		return err
	}
	if n != len(names) {
		return fmt.Errorf("pgnotify: %d of the %d notification triggers on %s are in place and enabled", n, len(names), t.qualified())
	}
	return nil
}

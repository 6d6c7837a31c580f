package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/uptrace/bun"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime error: database, not found, interrupted
	exitUsage   = 2 // unknown command, missing argument, bad flag
)

const usageText = `Usage: sessionctl [flags] COMMAND [ARG] [flags]

Manage the session table of sqlsessions (bunstore) in PostgreSQL, MySQL/MariaDB
or SQLite.

Commands:
  migrate          create the schema, table and index if they do not exist
  purge            delete expired sessions in batches, showing progress
  stats            count live and expired sessions; data size percentiles
  inspect TOKEN    print a session's data as JSON, with its expiry and version
  revoke TOKEN     delete a session (log its holder out)
  sessions --user U
                   list the live sessions of user U (id, created, expiry)
  revoke --user U  delete every session of user U (log out everywhere);
                   --except ID keeps one (log out the other devices)
  help             print this help

TOKEN is the session cookie's value; instead of it, inspect and revoke accept
--id ID, the stored id (safe to log). Tokens are never printed. U is the user
key the application bound with Session.SetUser.

Flags:
  --database-url URL  database to use (default: $DATABASE_URL): postgres://...,
                      mysql://user:pass@host:3306/db, sqlite::memory:,
                      sqlite://path, sqlite:path or file:path
  --schema NAME       schema (PostgreSQL) or database (MySQL) holding the
                      table (default tower_sessions; not for SQLite)
  --table NAME        table name (default session; tower_sessions on SQLite)
  --json              print machine-readable JSON instead of text
  --batch N           purge: rows per DELETE statement (default 1000)
  --id ID             inspect, revoke: the stored id instead of a token
  --user U            sessions, revoke: the user whose sessions to list or revoke
  --except ID         revoke --user: the stored id of a session to keep

Exit status: 0 success, 1 runtime error (including an unknown session),
2 usage error.
`

// options holds the parsed command line.
type options struct {
	databaseURL string
	schema      string
	table       string
	json        bool
	batch       int
	id          string
	user        string
	except      string
	set         map[string]bool // flags given explicitly
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run is the whole program: it parses args (without the program name), runs
// the command and returns the exit status. env looks up environment
// variables (os.Getenv in main).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	cmd, pos, o, err := parseArgs(args, env)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	if err == nil {
		err = dispatch(ctx, cmd, pos, o, stdout)
	}
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "sessionctl: %s (see 'sessionctl -h')\n", oneLine(ue.msg))
		return exitUsage
	}
	fmt.Fprintf(stderr, "sessionctl: %s\n", oneLine(err.Error()))
	return exitFailure
}

// oneLine keeps an error message (some drivers' span lines) on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// parseArgs accepts flags before and after the command and its argument.
func parseArgs(args []string, env func(string) string) (cmd string, pos []string, o options, err error) {
	fs := flag.NewFlagSet("sessionctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.databaseURL, "database-url", "", "")
	fs.StringVar(&o.schema, "schema", "", "")
	fs.StringVar(&o.table, "table", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.IntVar(&o.batch, "batch", bunstore.DefaultDeleteBatchSize, "")
	fs.StringVar(&o.id, "id", "", "")
	fs.StringVar(&o.user, "user", "", "")
	fs.StringVar(&o.except, "except", "", "")
	rest := args
	for {
		// A token is base64url and may begin with "-": only a word naming
		// one of our flags is a flag, anything else (a token, a signed
		// cookie value, a mistyped token) is an argument.
		if len(rest) > 0 && strings.HasPrefix(rest[0], "-") && !isFlag(fs, rest[0]) {
			pos = append(pos, rest[0])
			rest = rest[1:]
			continue
		}
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", nil, o, err
			}
			return "", nil, o, usagef("%v", err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if len(pos) == 0 {
		return "", nil, o, usagef("no command given (migrate, purge, stats, inspect, revoke, sessions)")
	}
	cmd, pos = pos[0], pos[1:]
	if o.databaseURL == "" && !o.set["database-url"] {
		o.databaseURL = env("DATABASE_URL")
	}
	return cmd, pos, o, nil
}

// isFlag reports whether arg ("-name", "--name", either with "=value")
// reads as a flag: one of ours, or a word of lowercase letters and dashes
// (an unknown flag, reported as such). A session token is base64url and may
// start with "-", but is not such a word.
func isFlag(fs *flag.FlagSet, arg string) bool {
	if _, err := core.ParseToken(arg); err == nil {
		return false
	}
	name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, _, _ = strings.Cut(name, "=")
	if fs.Lookup(name) != nil || name == "" {
		return true
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && c != '-' {
			return false
		}
	}
	return true
}

func dispatch(ctx context.Context, cmd string, pos []string, o options, stdout io.Writer) error {
	type command struct {
		args  int      // positional arguments accepted at most
		flags []string // command-specific flags it accepts
		run   func(context.Context, *env, []string) error
	}
	commands := map[string]command{
		"migrate":  {0, nil, migrate},
		"purge":    {0, []string{"batch"}, purge},
		"stats":    {0, nil, stats},
		"inspect":  {1, []string{"id"}, inspect},
		"revoke":   {1, []string{"id", "user", "except"}, revoke},
		"sessions": {0, []string{"user"}, sessions},
	}
	if cmd == "help" {
		fmt.Fprint(stdout, usageText)
		return nil
	}
	c, ok := commands[cmd]
	if !ok {
		return usagef("unknown command %q (migrate, purge, stats, inspect, revoke, sessions, help)", cmd)
	}
	for _, f := range []string{"batch", "id", "user", "except"} {
		if o.set[f] && !contains(c.flags, f) {
			return usagef("%s: flag --%s does not apply to this command", cmd, f)
		}
	}
	if len(pos) > c.args {
		return usagef("%s: unexpected argument (%d given, at most %d accepted)", cmd, len(pos), c.args)
	}
	if o.batch < 1 {
		return usagef("purge: --batch must be at least 1, got %d", o.batch)
	}
	if o.databaseURL == "" {
		return usagef("%s: no database: set --database-url or DATABASE_URL", cmd)
	}
	kind, err := dburl.KindOf(o.databaseURL)
	if err != nil {
		return usagef("--database-url: %v", err)
	}
	// bunstore validates the names too, but only once the database is
	// open: checking first keeps a usage error from creating an SQLite file.
	if kind == dburl.SQLite && o.set["schema"] {
		return usagef("--schema: SQLite has no schemas (use another database file, or --table)")
	}
	for _, f := range []struct{ flag, name string }{{"schema", o.schema}, {"table", o.table}} {
		if o.set[f.flag] && !validName(f.name) {
			return usagef("--%s: invalid identifier %q: use letters, digits and underscores, not starting with a digit, at most 63 bytes", f.flag, f.name)
		}
	}
	// Check the session argument before touching the database.
	var id core.ID
	byUser := o.set["user"]
	switch {
	case byUser && (len(pos) > 0 || o.set["id"]):
		return usagef("%s: give either --user or a session (TOKEN or --id), not both", cmd)
	case o.set["except"] && !byUser:
		return usagef("%s: --except applies to revoke --user only", cmd)
	case byUser && (o.user == "" || len(o.user) > core.MaxUserLen):
		return usagef("%s: --user must be a user key of 1 to %d bytes", cmd, core.MaxUserLen)
	case cmd == "sessions" && !byUser:
		return usagef("sessions: missing --user U")
	case o.set["except"] && !core.ValidID(core.ID(o.except)):
		return usagef("%s: --except is not a session id (%d characters of base64url)", cmd, core.IDLen)
	case c.args == 1 && !byUser:
		if id, err = sessionID(cmd, pos, o.id); err != nil {
			return err
		}
	}
	// Only migrate creates an SQLite file; the other commands would find
	// an empty database in it.
	if path, ok := dburl.SQLiteFile(o.databaseURL); ok && cmd != "migrate" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: database file %s does not exist (run 'sessionctl migrate' to create it)", cmd, path)
		}
	}
	e, err := openEnv(o, stdout)
	if err != nil {
		return err
	}
	defer e.close()
	e.id = id
	return c.run(ctx, e, pos)
}

// validName is bunstore's rule for schema and table names:
// [A-Za-z_][A-Za-z0-9_]*, at most 63 bytes.
func validName(s string) bool {
	if s == "" || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sessionID derives the store id from the TOKEN argument or --id. Error
// messages never contain the token.
func sessionID(cmd string, pos []string, idFlag string) (core.ID, error) {
	switch {
	case len(pos) == 1 && idFlag != "":
		return "", usagef("%s: give either TOKEN or --id, not both", cmd)
	case idFlag != "":
		id := core.ID(idFlag)
		if !core.ValidID(id) {
			return "", usagef("%s: --id is not a session id (%d characters of base64url)", cmd, core.IDLen)
		}
		return id, nil
	case len(pos) == 1:
		tok := strings.TrimSpace(pos[0])
		// A signed cookie holds "TOKEN.MAC": the token alone names the session.
		if len(tok) > core.TokenLen && tok[core.TokenLen] == '.' {
			tok = tok[:core.TokenLen]
		}
		t, err := core.ParseToken(tok)
		if err != nil {
			return "", usagef("%s: TOKEN is not a session token (a cookie value of %d base64url characters; for an encrypted cookie, use --id)", cmd, core.TokenLen)
		}
		return t.ID(), nil
	}
	if cmd == "revoke" {
		return "", usagef("%s: missing TOKEN (or --id ID, or --user U)", cmd)
	}
	return "", usagef("%s: missing TOKEN (or --id ID)", cmd)
}

// env is what every command works with.
type env struct {
	o      options
	db     *bun.DB
	kind   dburl.Kind
	store  *bunstore.Store
	id     core.ID // inspect, revoke
	stdout io.Writer
	now    func() time.Time
}

func openEnv(o options, stdout io.Writer) (*env, error) {
	db, kind, err := dburl.Open(o.databaseURL, dburl.Options{})
	if err != nil {
		if errors.Is(err, dburl.ErrUnsupported) {
			return nil, usagef("--database-url: %v", err)
		}
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	var opts []bunstore.Option
	if o.set["schema"] {
		opts = append(opts, bunstore.WithSchemaName(o.schema))
	}
	if o.set["table"] {
		opts = append(opts, bunstore.WithTableName(o.table))
	}
	opts = append(opts, bunstore.WithDeleteBatchSize(o.batch))
	store, err := bunstore.New(db, opts...)
	if err != nil {
		db.Close()
		if errors.Is(err, bunstore.ErrInvalidName) {
			return nil, &usageError{err.Error()}
		}
		return nil, err
	}
	return &env{o: o, db: db, kind: kind, store: store, stdout: stdout, now: func() time.Time { return time.Now().UTC() }}, nil
}

func (e *env) close() {
	e.store.Close()
	e.db.Close()
}

// table is the store's table, schema-qualified where there is a schema, for
// bun's formatter (which quotes each part).
func (e *env) table() bun.Ident {
	if s := e.store.SchemaName(); s != "" {
		return bun.Ident(s + "." + e.store.TableName())
	}
	return bun.Ident(e.store.TableName())
}

// tableName is the table's name for people.
func (e *env) tableName() string {
	if s := e.store.SchemaName(); s != "" {
		return s + "." + e.store.TableName()
	}
	return e.store.TableName()
}

// dbError adds a hint to errors that mean the table is missing.
func (e *env) dbError(what string, err error) error {
	msg := err.Error()
	for _, s := range []string{"does not exist", "doesn't exist", "no such table", "Unknown database"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%s: %w (has 'sessionctl migrate' been run for table %s?)", what, err, e.tableName())
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

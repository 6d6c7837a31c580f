// Command sessionctl manages the session table that sqlsessions' SQL store
// (bunstore) keeps in PostgreSQL, MySQL/MariaDB or SQLite: it creates the
// table, purges expired sessions, reports on the table, shows one session's
// data and revokes a session.
//
// Usage:
//
//	sessionctl [flags] COMMAND [ARG] [flags]
//
// Flags may come before or after the command:
//
//	--database-url URL  the database (default: the DATABASE_URL environment
//	                    variable), in the forms the examples use:
//	                      postgres://user:pass@host:5432/db?sslmode=disable
//	                      mysql://user:pass@host:3306/db   (mariadb:// too;
//	                        parseTime=true&loc=UTC are added unless given;
//	                        ?socket=/path for a Unix socket)
//	                      sqlite::memory:   sqlite://path   sqlite:path
//	                      file:path         (SQLite URI)
//	                    Percent-encode special characters in a password.
//	--schema NAME       the schema (PostgreSQL) or database (MySQL) holding
//	                    the table; default tower_sessions. Not for SQLite.
//	--table NAME        the table; default session (tower_sessions on SQLite).
//	                    Names are plain identifiers: [A-Za-z_][A-Za-z0-9_]*.
//	--json              print one JSON document instead of text, for scripts.
//	--batch N           purge: rows removed per DELETE statement (default 1000).
//	--id ID             inspect, revoke: the session's stored id instead of its
//	                    token.
//
// Use the same --schema and --table as the application's bunstore options.
//
// # migrate
//
// Creates the schema, the table and its index on the expiry if they do not
// exist, exactly as the application's Store.Migrate does. Running it again, or
// from several machines at once, is safe.
//
//	$ sessionctl migrate --database-url postgres://app@db:5432/app
//	table tower_sessions.session is ready
//
// migrate is the only command that creates an SQLite database file; the others
// report a missing file.
//
// # purge
//
// Deletes the sessions that are expired now, in batches of --batch rows, each
// batch committed on its own so that the application keeps running between
// them. Sessions that expire while it runs are left for the next purge. On a
// terminal it shows a live line with the rows deleted so far and the rate; on
// a pipe or file, a plain line at most once a second; then the total.
//
//	$ sessionctl purge --batch 5000
//	purged 182340 expired sessions in 3.2s (56981/s)
//	$ sessionctl purge --json
//	{
//	  "deleted": 0,
//	  "seconds": 0.004,
//	  "rate_per_second": 0
//	}
//
// Interrupting it (Ctrl-C, SIGTERM) cancels the statement in progress (its
// batch is rolled back or completes, never half-applied) and reports how many
// rows were deleted, with exit status 1. The application can purge on its own
// with bunstore's Store.ContinuouslyDeleteExpired; purge is for clearing a
// backlog or for a cron job.
//
// # stats
//
// Counts live and expired (not yet purged) sessions and reports the size of
// the stored data of live sessions in bytes: the 50th, 90th and 99th
// percentiles (nearest rank), the largest and the total. Rows whose expiry
// no session can have (past the year 9999, such as PostgreSQL's infinity;
// text or NULL on SQLite) are counted apart as unreadable, on a line of their
// own when there are any: purge removes them.
//
//	$ sessionctl stats
//	table:    tower_sessions.session
//	live:     18204
//	expired:  311
//	data size of live sessions (bytes): p50 61, p90 230, p99 1840, max 65210, total 2190112
//
// With --json (indented; shortened here):
//
//	{"table": "tower_sessions.session", "live": 18204, "expired": 311, "unreadable": 0,
//	 "data_bytes": {"p50": 61, "p90": 230, "p99": 1840, "max": 65210, "total": 2190112}}
//
// # inspect TOKEN
//
// Shows a live session: its stored id, expiry, version (the number of writes)
// and data. TOKEN is the value of the session cookie (for a signed cookie,
// "TOKEN.SIGNATURE", the token part is used); the database holds only a
// hash of it (128 bits of its SHA-256), the id, which --id accepts instead. The data is
// decoded from MessagePack without knowing the application's Go types and
// printed as JSON: maps become objects (non-string keys are written as
// strings), binary data becomes base64, times become RFC 3339 strings in UTC,
// and NaN and infinities become strings. A value that cannot be decoded (for
// example a MessagePack extension type registered only in the application) is
// shown as {"$undecodable": BASE64, "$error": REASON}.
//
//	$ sessionctl inspect "$COOKIE"
//	id:       9xVw3l0z4t7QGv0m0tYH0o0jX6tVQm8hJ9m0mEqS0cY
//	expiry:   2026-11-25T18:51:52.123456Z (in 59m58s)
//	version:  3
//	data:     {
//	  "cart": [17, 23],
//	  "user_id": 42
//	}
//	$ sessionctl inspect --json --id 9xVw3l0z4t7QGv0m0tYH0o0jX6tVQm8hJ9m0mEqS0cY
//	{"id": "...", "expiry": "...", "expires_in_seconds": 3598.2, "version": 3, "data": {...}}
//
// An unknown, revoked or expired session is reported with exit status 1.
// An encrypted (private) cookie cannot be turned into an id: use --id with the
// id from the application's logs.
//
// # revoke TOKEN
//
// Deletes the session, logging its holder out at their next request. It takes
// a token or --id like inspect, removes an expired row too, and exits with
// status 1 if there was no such session.
//
//	$ sessionctl revoke --id 9xVw3l0z4t7QGv0m0tYH0o0jX6tVQm8hJ9m0mEqS0cY
//	revoked session 9xVw3l0z4t7QGv0m0tYH0o0jX6tVQm8hJ9m0mEqS0cY
//
// # sessions --user U, revoke --user U
//
// List or revoke the sessions of one user: the user key the application
// bound with Session.SetUser at log-in. Both are one indexed statement.
// revoke --user logs the user out everywhere; with --except ID it keeps one
// session (log out the other devices). Revoking a user who has no sessions
// succeeds with a count of 0.
//
//	$ sessionctl sessions --user 42
//	2 live sessions of user 42
//	nILgWzaN5F8jjBv-DWm-KA  created 2026-11-30T09:12:44Z  expires 2026-12-14T09:12:44Z (in 311h4m2s)
//	q3tJ0mZb8kq2Q0aVw9dZxA  created 2026-12-01T08:01:10Z  expires 2026-12-15T08:01:10Z (in 335h52m28s)
//	$ sessionctl revoke --user 42 --except nILgWzaN5F8jjBv-DWm-KA --json
//	{
//	  "revoked": 1,
//	  "user": "42"
//	}
//
// # Output and exit status
//
// sessionctl never prints a token, only ids, which are safe to log, and never
// prints the database URL. Errors are one line on standard error, starting
// with "sessionctl: ". The exit status is 0 on success, 1 on a runtime error
// (database unreachable, table missing, session not found, interrupted) and 2
// on a usage error (unknown command, missing or extra argument, malformed
// token or id, bad flag or name, no database URL). -h, --help and "help"
// print the usage.
package main

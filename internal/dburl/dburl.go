// Package dburl opens the database named by a URL of the forms the Rust seed
// (sqlx) and the examples accept, as a *bun.DB with the right dialect:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (also postgresql://)
//	mysql://user:pass@host:3306/db                      (also mariadb://)
//	sqlite::memory:
//	sqlite://sessions.db   sqlite:///var/lib/app/s.db   sqlite:sessions.db
//	file:sessions.db?mode=rwc
//
// PostgreSQL goes through the pgx stdlib driver. A MySQL URL is converted to
// a go-sql-driver/mysql configuration with parseTime=true and loc=UTC
// (MySQLConfig, MySQLDSN), and bun's MySQL dialect writes times in UTC.
// SQLite is opened by sqlitewasm (no cgo).
//
// It is the one place our examples, tools and tests (internal/dbtest) read
// database URLs, so they all accept the same forms and none of their errors
// shows a password. It does not import testing: commands link it.
package dburl

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// ErrUnsupported is wrapped by the error Open returns for a URL whose form it
// does not know.
var ErrUnsupported = errors.New("unsupported database URL")

// ErrBadURL is wrapped by the errors of a URL that names a known database
// but cannot be used as it is (malformed, wrong scheme for the conversion
// asked, an unsupported parameter).
var ErrBadURL = errors.New("bad database URL")

// Kind is the database family a URL names.
type Kind string

// The database families Open supports.
const (
	Postgres Kind = "postgres"
	MySQL    Kind = "mysql"
	SQLite   Kind = "sqlite"
)

// KindOf reports which database family rawURL names, or an error wrapping
// ErrUnsupported. It never echoes the URL, which may hold a password.
func KindOf(rawURL string) (Kind, error) {
	s := strings.TrimSpace(rawURL)
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrUnsupported)
	case hasScheme(s, "postgres://"), hasScheme(s, "postgresql://"):
		return Postgres, nil
	case hasScheme(s, "mysql://"), hasScheme(s, "mariadb://"):
		return MySQL, nil
	case hasScheme(s, "sqlite:"), hasScheme(s, "file:"):
		return SQLite, nil
	}
	scheme, _, ok := strings.Cut(s, ":")
	if ok && !strings.ContainsAny(scheme, `/\.`) && scheme != "" {
		return "", fmt.Errorf("%w: scheme %q (use postgres://, mysql://, sqlite: or file:)", ErrUnsupported, scheme)
	}
	return "", fmt.Errorf("%w: no scheme (use postgres://, mysql://, sqlite: or file:)", ErrUnsupported)
}

func hasScheme(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Options tune Open. The zero value works.
type Options struct {
	// MaxConns bounds the pool (open and idle alike). Zero: 2, enough for a
	// command-line tool.
	MaxConns int
}

// Open opens the database rawURL names. It does not contact the server:
// the first query does (SQLite files are checked at once).
func Open(rawURL string, opts Options) (*bun.DB, Kind, error) {
	kind, err := KindOf(rawURL)
	if err != nil {
		return nil, "", err
	}
	n := opts.MaxConns
	if n <= 0 {
		n = 2
	}
	s := strings.TrimSpace(rawURL)
	var db *bun.DB
	switch kind {
	case Postgres:
		cfg, err := pgxConfig(s)
		if err != nil {
			return nil, "", err
		}
		db = bun.NewDB(stdlib.OpenDB(*cfg), pgdialect.New())
	case MySQL:
		cfg, err := MySQLConfig(s)
		if err != nil {
			return nil, "", err
		}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, "", fmt.Errorf("mysql URL: %w", err)
		}
		db = bun.NewDB(sql.OpenDB(conn), mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
	case SQLite:
		db, err = sqlitewasm.Open(s, sqlitewasm.WithMaxOpenConns(n))
		if err != nil {
			return nil, "", err
		}
		return db, kind, nil
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(time.Minute)
	return db, kind, nil
}

// CheckPostgresURL reports whether rawURL is a postgres:// or postgresql://
// URL, the form both sqlx and pgx accept, without contacting the server.
func CheckPostgresURL(rawURL string) error {
	if !strings.Contains(rawURL, "://") {
		return fmt.Errorf("%w: want postgres://user:password@host:port/database", ErrBadURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBadURL, redactErr(err, rawURL))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%w: %q: want postgres://user:password@host:port/database", ErrBadURL, u.Redacted())
	}
	return nil
}

func pgxConfig(rawURL string) (*pgx.ConnConfig, error) {
	// pgconn redacts the password in the errors it returns.
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("postgres URL: %w", err)
	}
	return cfg, nil
}

// SQLiteFile returns the file an SQLite URL names (sqlite://path,
// sqlite:path or file:path, percent-decoded, without the query), and false
// for an in-memory database or a URL that is not SQLite.
func SQLiteFile(rawURL string) (string, bool) {
	s := strings.TrimSpace(rawURL)
	var rest string
	switch {
	case hasScheme(s, "sqlite://"):
		rest = s[len("sqlite://"):]
	case hasScheme(s, "sqlite:"):
		rest = s[len("sqlite:"):]
	case hasScheme(s, "file:"):
		rest = s[len("file:"):]
		if strings.HasPrefix(rest, "//") { // file://localhost/path or file:///path
			rest = rest[2:]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[i:]
			}
		}
	default:
		return "", false
	}
	p, query, _ := strings.Cut(rest, "?")
	q, _ := url.ParseQuery(query)
	p, err := url.PathUnescape(p)
	if err != nil || p == "" || p == ":memory:" || q.Get("mode") == "memory" || q.Get("vfs") == "memdb" {
		return "", false
	}
	return p, true
}

// redactErr returns err's message with the password of rawURL hidden (a
// *url.Error quotes the whole URL).
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Op + " URL: " + ue.Err.Error()
	}
	if at := strings.LastIndex(rawURL, "@"); at >= 0 {
		if colon := strings.Index(rawURL[:at], "://"); colon >= 0 {
			creds := rawURL[colon+3 : at]
			if _, pw, ok := strings.Cut(creds, ":"); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
	}
	return msg
}

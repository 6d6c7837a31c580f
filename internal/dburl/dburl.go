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
// a go-sql-driver/mysql configuration with parseTime=true and loc=UTC (unless
// the URL's query sets them), and bun's MySQL dialect writes times in UTC.
// SQLite is opened by sqlitewasm (no cgo).
package dburl

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
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

// MySQLConfig converts mysql://user:pass@host:port/db?params (sqlx's form;
// mariadb:// too) into a go-sql-driver/mysql configuration: the port defaults
// to 3306, a host starting with "/" or a "socket" parameter means a Unix
// socket, and parseTime=true and loc=UTC are set unless params set them.
// Errors never contain the password.
func MySQLConfig(rawURL string) (*mysql.Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("mysql URL: cannot parse it (check that special characters in the password are percent-encoded)")
	}
	q := u.Query()
	if !q.Has("parseTime") {
		q.Set("parseTime", "true")
	}
	if !q.Has("loc") {
		q.Set("loc", "UTC")
	}
	network, addr := "tcp", u.Host
	if sock := q.Get("socket"); sock != "" {
		network, addr = "unix", sock
		q.Del("socket")
	} else if addr == "" {
		addr = "127.0.0.1:3306"
	} else if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return nil, fmt.Errorf("mysql URL: database name %q contains a slash", db)
	}
	// Let the driver parse the parameters (it knows them all), then set the
	// parts a DSN string could not carry safely.
	cfg, err := mysql.ParseDSN(network + "(" + "localhost" + ")/?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("mysql URL: parameters: %w", err)
	}
	cfg.Net, cfg.Addr, cfg.DBName = network, addr, db
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	return cfg, nil
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

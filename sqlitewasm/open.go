package sqlitewasm

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	sqlite3driver "github.com/ncruces/go-sqlite3/driver"
	"github.com/ncruces/go-sqlite3/vfs"
	"github.com/sqlsessions/sqlsessions/sqlitewasm/internal/memdb"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// DefaultMaxOpenConns is the pool size Open uses unless WithMaxOpenConns
// says otherwise. SQLite runs one writer at a time; a few connections let
// readers proceed beside it without piling up waiters on the write lock.
const DefaultMaxOpenConns = 4

// DefaultBusyTimeout is how long a connection waits for a lock held by
// another connection before failing with SQLITE_BUSY, unless
// WithBusyTimeout says otherwise.
const DefaultBusyTimeout = 10 * time.Second

// ErrUnsupportedDSN is returned (wrapped) by Open for a data source name it
// does not understand, such as a postgres:// URL or an empty string.
var ErrUnsupportedDSN = errors.New("sqlitewasm: unsupported data source name")

// Option configures Open.
type Option func(*config)

type config struct {
	maxOpenConns int
	busyTimeout  time.Duration
	pragmas      []string
	dbOptions    []bun.DBOption
}

// WithMaxOpenConns sets the pool size (default DefaultMaxOpenConns). The
// pool keeps that many idle connections too, so prepared statements survive
// between requests. n < 1 means the default. Raise it for read-heavy loads;
// 1 serialises every query. Builds without file locking or shared memory
// always use 1 for file databases.
func WithMaxOpenConns(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.maxOpenConns = n
		}
	}
}

// WithBusyTimeout sets how long a connection waits for another connection's
// lock before giving up with "database is locked" (default
// DefaultBusyTimeout). d is rounded down to whole milliseconds (at least
// one); d <= 0 means the default, because a zero timeout makes concurrent
// writers fail at once.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = max(d, time.Millisecond)
		}
	}
}

// WithPragma adds a PRAGMA run on every new connection, in the driver's
// "_pragma" form without the PRAGMA keyword, for example
// WithPragma("cache_size(-32000)"). Pragmas given here and in the DSN run
// after busy_timeout; a journal_mode, synchronous or journal_size_limit
// pragma given here or in the DSN replaces the WAL / NORMAL /
// DefaultJournalSizeLimit default, and wal_autocheckpoint(0) turns automatic
// checkpoints off (see the package documentation).
func WithPragma(pragma string) Option {
	return func(c *config) {
		c.pragmas = append(c.pragmas, pragma)
	}
}

// WithDBOptions passes options to bun.NewDB, for example
// bun.WithDiscardUnknownColumns().
func WithDBOptions(opts ...bun.DBOption) Option {
	return func(c *config) {
		c.dbOptions = append(c.dbOptions, opts...)
	}
}

// Open opens the SQLite database named by dsn (see the package
// documentation for the accepted forms and the defaults) and returns it as a
// *bun.DB using the SQLite dialect.
//
// A relative path is made absolute once, here, so every pooled connection
// opens the same file even if the working directory changes later. Open
// checks the database by connecting once, so a bad path or a file that is
// not a database is reported here rather than at the first query. Close
// the returned DB when done; for an in-memory database that also frees its
// memory.
func Open(dsn string, opts ...Option) (*bun.DB, error) {
	db, _, err := open(dsn, opts...)
	return db, err
}

// open is Open that also reports the memdb name of an in-memory database.
func open(dsn string, opts ...Option) (*bun.DB, string, error) {
	cfg := config{maxOpenConns: DefaultMaxOpenConns, busyTimeout: DefaultBusyTimeout}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}

	target, err := parseDSN(dsn)
	if err != nil {
		return nil, "", err
	}

	if !target.memory && !target.raw && !filepath.IsAbs(target.path) {
		// Every new pooled connection opens the file again: pin it now, so
		// a later os.Chdir cannot send connections to another file.
		abs, err := filepath.Abs(target.path)
		if err != nil {
			return nil, "", fmt.Errorf("sqlitewasm: open %q: %w", dsn, err)
		}
		target.path = abs
	}

	var memName string
	if target.memory {
		memName = "sqlitewasm-" + rand.Text()
		memdb.Create(memName, nil)
	}
	uri, single := target.uri(&cfg, memName, vfs.SupportsFileLocking, vfs.SupportsSharedMemory)

	inner, err := (&sqlite3driver.SQLite{}).OpenConnector(uri)
	if err != nil {
		if memName != "" {
			memdb.Delete(memName)
		}
		return nil, "", fmt.Errorf("sqlitewasm: open %q: %w", dsn, err)
	}
	cn := &connector{Connector: inner, memName: memName}
	if !target.memory && !target.raw {
		cn.wal = new(walLimiter)
	}
	sqldb := sql.OpenDB(cn)

	n := cfg.maxOpenConns
	if single {
		n = 1
	}
	sqldb.SetMaxOpenConns(n)
	sqldb.SetMaxIdleConns(n)
	sqldb.SetConnMaxLifetime(0)
	sqldb.SetConnMaxIdleTime(0)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.busyTimeout+5*time.Second)
	defer cancel()
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, "", fmt.Errorf("sqlitewasm: open %q: %w", dsn, err)
	}
	return bun.NewDB(sqldb, sqlitedialect.New(), cfg.dbOptions...), memName, nil
}

// connector wraps the driver's connector so that closing the *sql.DB also
// deletes the in-memory database it owns (database/sql calls Close on a
// connector that implements io.Closer).
type connector struct {
	driver.Connector
	memName string
	wal     *walLimiter // nil: SQLite's own automatic checkpoints
}

// Connect opens a connection, installs the WAL limiter for a file database
// (see walLimiter), and wraps it so that errors caused by a context's end
// wrap that context's error (see ctxErr).
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if raw, ok := conn.(sqlite3driver.Conn); ok && c.wal != nil {
		if err := c.wal.install(raw.Raw()); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return wrapConn(conn), nil
}

var _ io.Closer = (*connector)(nil)

func (c *connector) Close() error {
	var err error
	if cl, ok := c.Connector.(io.Closer); ok {
		err = cl.Close()
	}
	if c.memName != "" {
		memdb.Delete(c.memName)
	}
	return err
}

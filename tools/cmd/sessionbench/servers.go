package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/mysqlstore"
	"github.com/alexedwards/scs/postgresstore"
	"github.com/alexedwards/scs/sqlite3store"
	"github.com/alexedwards/scs/v2"
	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver
	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Server names, in the order rounds run them.
const (
	serverOurs  = "sqlsessions"
	serverSCS   = "scs"
	serverFloor = "floor"
)

var serverNames = []string{serverOurs, serverSCS, serverFloor}

// Paths every server answers: "/" reads the counter, increments it and
// writes it back; "/read" only reads it.
const (
	pathCounter = "/"
	pathRead    = "/read"
)

// backend is one database with the three servers on it.
type backend struct {
	name    string
	servers map[string]*server
	closers []func() error // run in reverse order by close
	// statements counts the statements sqlsessions' store ran, when
	// counting was asked for (nil otherwise).
	statements *statementCounter
	// db is the pool the servers share; tidy and settle run on it.
	db *sql.DB
	// tidy runs before each workload: it vacuums and analyzes the three
	// tables, so dead rows one workload left behind are not cleaned up by
	// autovacuum in the middle of whichever server's round comes next.
	tidy []string
	// settle runs before each measured round: it flushes the write-ahead
	// log, so no server pays for a checkpoint of another one's writes.
	settle []string
}

// runOrDrop executes statements on the backend's pool and returns them. If
// one fails (say, a user without the right to CHECKPOINT) it says so on log
// and returns nil, so the run goes on without them.
func (b *backend) runOrDrop(ctx context.Context, statements []string, log io.Writer) []string {
	for _, q := range statements {
		if _, err := b.db.ExecContext(ctx, q); err != nil {
			fmt.Fprintf(log, "%s: warning: %s: %v; going on without it\n", b.name, q, err)
			return nil
		}
	}
	return statements
}

// statementCounter is a bun.QueryHook that counts the store's statements.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

func (b *backend) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// server is one HTTP server on a loopback port.
type server struct {
	name string
	url  string // http://127.0.0.1:port
	srv  *http.Server
}

// writeCount answers the counter workload.
func writeCount(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Current count: " + strconv.Itoa(n)))
}

// oursHandler is the seed's handler on sqlsessions.
func oursHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		s := httpadapter.FromContext(ctx)
		n, _, err := core.Get[int](ctx, s, "counter")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Path != pathRead {
			n++
			if err := s.Insert(ctx, "counter", n); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		writeCount(w, n)
	})
}

// scsHandler is the same handler on scs.
func scsHandler(sm *scs.SessionManager) http.Handler {
	return sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		n := sm.GetInt(ctx, "counter")
		if r.URL.Path != pathRead {
			n++
			sm.Put(ctx, "counter", n)
		}
		writeCount(w, n)
	}))
}

// floor is the raw floor: its own random cookie token, one prepared SELECT
// and one prepared upsert per request on database/sql, no session library.
type floor struct {
	load, upsert *sql.Stmt
	arg          func(time.Time) any // expiry column argument
	row          bool                // load also returns data, expiry, version (dbConfig.floorRow)
}

const floorCookie = "id"

// floorTTL is how long a floor session lives.
const floorTTL = 14 * 24 * time.Hour

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := time.Now()
	var token string
	n := 0
	if c, err := r.Cookie(floorCookie); err == nil && len(c.Value) == 22 {
		token = c.Value
		switch err := f.scan(f.load.QueryRowContext(ctx, token, f.arg(now)), &n); {
		case errors.Is(err, sql.ErrNoRows):
			token = ""
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if r.URL.Path != pathRead {
		fresh := token == ""
		if fresh {
			var b [16]byte
			_, _ = rand.Read(b[:])
			token = base64.RawURLEncoding.EncodeToString(b[:])
		}
		n++
		if _, err := f.upsert.ExecContext(ctx, token, n, f.arg(now.Add(floorTTL))); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if fresh {
			http.SetCookie(w, &http.Cookie{Name: floorCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
	}
	writeCount(w, n)
}

// scan reads the counter of a loaded row, and with row the rest of it, the
// way bunstore does: the blob into a []byte, the expiry through a Scanner
// that gets the driver's value as it is.
func (f *floor) scan(r *sql.Row, n *int) error {
	if !f.row {
		return r.Scan(n)
	}
	var (
		data    []byte
		expiry  anyScanner
		version int64
	)
	return r.Scan(n, &data, &expiry, &version)
}

// anyScanner takes any column value.
type anyScanner struct{ v any }

func (a *anyScanner) Scan(v any) error { a.v = v; return nil }

// dbConfig says how to reach the databases, how large the pools are and
// what the floor's table holds.
type dbConfig struct {
	postgresURL string
	mysqlDSN    string
	pool        int // PostgreSQL and MySQL pool size (open = idle)
	sqlitePool  int
	tempDir     string // where the SQLite file goes
	// floorRow gives the floor's rows a session's shape: its SELECT also
	// returns a blob (the 12 bytes of sqlsessions' {"counter": 258}) and a
	// version besides the expiry, which it scans and does not decode.
	floorRow bool
}

// floorRowBlob is the blob of a floor row with floorRow, as a hex string.
const floorRowBlob = "81a7636f756e746572cd0102"

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("sessionbench_%x", b)
}

func setPool(db *sql.DB, n int) {
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
}

// openBackend creates a fresh schema (database, file) for name, and the
// three servers on one pool: sqlsessions (httpadapter + bunstore), scs with
// its store for that database, and the floor. close drops everything.
func openBackend(ctx context.Context, name string, cfg dbConfig, label, countStatements bool) (_ *backend, err error) {
	b := &backend{name: name, servers: map[string]*server{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
		}
	}()
	var (
		bdb       *bun.DB
		scsStore  scs.Store
		oursOpts  []bunstore.Option
		fl        = &floor{}
		floorDDL  []string // the first creates the table: %s is for floorCols
		floorCols string   // the columns floorRow adds
		floorLoad string   // %s is for the columns it returns
		floorUps  string
	)
	schema := randomName()
	switch name {
	case "postgres":
		sqldb, err := sql.Open("pgx", cfg.postgresURL)
		if err != nil {
			return nil, err
		}
		setPool(sqldb, cfg.pool)
		b.closers = append(b.closers, sqldb.Close)
		if err := sqldb.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if _, err := sqldb.ExecContext(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		b.closers = append(b.closers, func() error {
			_, err := sqldb.ExecContext(context.Background(), `DROP SCHEMA "`+schema+`" CASCADE`)
			return err
		})
		bdb = bun.NewDB(sqldb, pgdialect.New())
		oursOpts = append(oursOpts, bunstore.WithSchemaName(schema))
		for _, q := range []string{
			`CREATE TABLE "` + schema + `".sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`,
			`CREATE INDEX sessions_expiry_idx ON "` + schema + `".sessions (expiry)`,
		} {
			if _, err := sqldb.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("postgres: %w", err)
			}
		}
		scsStore = postgresstore.NewWithConfig(sqldb, postgresstore.Config{TableName: schema + ".sessions"})
		ft := `"` + schema + `".floor`
		floorCols = `, data BYTEA NOT NULL DEFAULT '\x` + floorRowBlob + `', version BIGINT NOT NULL DEFAULT 1`
		floorDDL = []string{
			`CREATE TABLE ` + ft + ` (token TEXT PRIMARY KEY, counter BIGINT NOT NULL, expiry TIMESTAMPTZ NOT NULL%s)`,
			`CREATE INDEX floor_expiry_idx ON ` + ft + ` (expiry)`,
		}
		floorLoad = `SELECT %s FROM ` + ft + ` WHERE token = $1 AND expiry > $2`
		floorUps = `INSERT INTO ` + ft + ` (token, counter, expiry) VALUES ($1, $2, $3) ON CONFLICT (token) DO UPDATE SET counter = EXCLUDED.counter, expiry = EXCLUDED.expiry`
		fl.arg = func(t time.Time) any { return t }
		b.tidy = []string{
			`VACUUM (ANALYZE) "` + schema + `".session`, `VACUUM (ANALYZE) "` + schema + `".sessions`, `VACUUM (ANALYZE) ` + ft,
		}
		b.settle = []string{"CHECKPOINT"}
	case "mysql":
		admin, err := sql.Open("mysql", cfg.mysqlDSN)
		if err != nil {
			return nil, err
		}
		setPool(admin, 2)
		b.closers = append(b.closers, admin.Close)
		if err := admin.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+schema+"`"); err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		b.closers = append(b.closers, func() error {
			_, err := admin.ExecContext(context.Background(), "DROP DATABASE `"+schema+"`")
			return err
		})
		// mysqlstore uses the table "sessions" of the connection's
		// database: the pool opens the fresh database.
		mc, err := mysql.ParseDSN(cfg.mysqlDSN)
		if err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		mc.DBName = schema
		mc.ParseTime = true
		mc.Loc = time.UTC
		sqldb, err := sql.Open("mysql", mc.FormatDSN())
		if err != nil {
			return nil, err
		}
		setPool(sqldb, cfg.pool)
		b.closers = append(b.closers, sqldb.Close)
		bdb = bun.NewDB(sqldb, mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
		oursOpts = append(oursOpts, bunstore.WithSchemaName(schema))
		for _, q := range []string{
			"CREATE TABLE sessions (token CHAR(43) PRIMARY KEY, data BLOB NOT NULL, expiry TIMESTAMP(6) NOT NULL)",
			"CREATE INDEX sessions_expiry_idx ON sessions (expiry)",
		} {
			if _, err := sqldb.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("mysql: %w", err)
			}
		}
		scsStore = mysqlstore.NewWithCleanupInterval(sqldb, 0)
		floorCols = ", data BLOB NOT NULL DEFAULT x'" + floorRowBlob + "', version BIGINT NOT NULL DEFAULT 1"
		floorDDL = []string{
			"CREATE TABLE floor (token CHAR(22) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, counter BIGINT NOT NULL, expiry DATETIME(6) NOT NULL%s, INDEX floor_expiry_idx (expiry))",
		}
		floorLoad = "SELECT %s FROM floor WHERE token = ? AND expiry > ?"
		floorUps = "INSERT INTO floor (token, counter, expiry) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE counter = VALUES(counter), expiry = VALUES(expiry)"
		fl.arg = func(t time.Time) any { return t.UTC() }
		// InnoDB purges old row versions in the background; ANALYZE
		// refreshes the statistics the three tables are planned with.
		b.tidy = []string{"ANALYZE TABLE `" + schema + "`.session, sessions, floor"}
	case "sqlite":
		dir, err := os.MkdirTemp(cfg.tempDir, "sessionbench-")
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, func() error { return os.RemoveAll(dir) })
		// sqlitewasm: ncruces/go-sqlite3 (no cgo), WAL, synchronous=NORMAL,
		// busy_timeout; scs and the floor get the same *sql.DB.
		bdb, err = sqlitewasm.Open(filepath.Join(dir, "sessions.db"), sqlitewasm.WithMaxOpenConns(cfg.sqlitePool))
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, bdb.Close)
		for _, q := range []string{
			"CREATE TABLE sessions (token TEXT PRIMARY KEY, data BLOB NOT NULL, expiry REAL NOT NULL)",
			"CREATE INDEX sessions_expiry_idx ON sessions(expiry)",
		} {
			if _, err := bdb.DB.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("sqlite: %w", err)
			}
		}
		scsStore = sqlite3store.NewWithConfig(bdb.DB, sqlite3store.Config{})
		floorCols = ", data BLOB NOT NULL DEFAULT x'" + floorRowBlob + "', version INTEGER NOT NULL DEFAULT 1"
		floorDDL = []string{
			"CREATE TABLE floor (token TEXT PRIMARY KEY, counter INTEGER NOT NULL, expiry INTEGER NOT NULL%s)",
			"CREATE INDEX floor_expiry_idx ON floor (expiry)",
		}
		floorLoad = "SELECT %s FROM floor WHERE token = ? AND expiry > ?"
		floorUps = "INSERT INTO floor (token, counter, expiry) VALUES (?, ?, ?) ON CONFLICT (token) DO UPDATE SET counter = excluded.counter, expiry = excluded.expiry"
		fl.arg = func(t time.Time) any { return t.UnixMicro() }
		b.tidy = []string{"ANALYZE"}
		b.settle = []string{"PRAGMA wal_checkpoint(TRUNCATE)"}
	default:
		return nil, fmt.Errorf("unknown backend %q (want postgres, mysql or sqlite)", name)
	}
	sqldb := bdb.DB
	b.db = sqldb

	// sqlsessions
	if countStatements {
		b.statements = &statementCounter{}
		oursOpts = append(oursOpts, bunstore.WithQueryHook(b.statements))
	}
	store, err := bunstore.New(bdb, oursOpts...)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, store.Close)
	if err := store.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("%s: migrate: %w", name, err)
	}
	mgr, err := httpadapter.New(store, httpadapter.WithSecure(false))
	if err != nil {
		return nil, err
	}

	// scs
	sm := scs.New()
	sm.Store = scsStore
	sm.Cookie.Secure = false

	// floor
	cols, returned := "", "counter"
	if cfg.floorRow {
		cols, returned, fl.row = floorCols, "counter, data, expiry, version", true
	}
	floorDDL[0], floorLoad = fmt.Sprintf(floorDDL[0], cols), fmt.Sprintf(floorLoad, returned)
	for _, q := range floorDDL {
		if _, err := sqldb.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if fl.load, err = sqldb.PrepareContext(ctx, floorLoad); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b.closers = append(b.closers, fl.load.Close)
	if fl.upsert, err = sqldb.PrepareContext(ctx, floorUps); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b.closers = append(b.closers, fl.upsert.Close)

	for _, s := range []struct {
		name string
		h    http.Handler
	}{
		{serverOurs, mgr.Middleware(oursHandler())},
		{serverSCS, scsHandler(sm)},
		{serverFloor, fl},
	} {
		srv, err := listen(s.name, s.h, label)
		if err != nil {
			return nil, err
		}
		b.servers[s.name] = srv
		b.closers = append(b.closers, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.srv.Shutdown(ctx)
		})
	}
	return b, nil
}

// listen serves h on a fresh loopback port. With label, the server's
// goroutines (accepting, reading and writing HTTP, the handlers) carry the
// pprof label server=name.
func listen(name string, h http.Handler, label bool) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	serve := func(context.Context) { _ = srv.Serve(ln) }
	if label {
		go pprof.Do(context.Background(), pprof.Labels("server", name), serve)
	} else {
		go serve(nil)
	}
	return &server{name: name, url: "http://" + ln.Addr().String(), srv: srv}, nil
}

// cookieOf returns "name=value" of the Set-Cookie in resp, if any.
func cookieOf(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Value != "" && c.MaxAge >= 0 {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// parseCount reads N from "Current count: N".
func parseCount(body []byte) (int, bool) {
	s, ok := strings.CutPrefix(string(body), "Current count: ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

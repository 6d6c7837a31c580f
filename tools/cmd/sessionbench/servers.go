package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
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
	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Server names, in the order the first round runs them.
const (
	serverOurs     = "sqlsessions"
	serverSCS      = "scs"
	serverFloor    = "floor"
	serverHandmade = "handmade" // run only when --servers names it
)

// serverNames are the servers a run compares by default.
var serverNames = []string{serverOurs, serverSCS, serverFloor}

// serverChoices are the servers --servers accepts, in the order the first
// round runs them.
var serverChoices = []string{serverOurs, serverSCS, serverFloor, serverHandmade}

var backendNames = []string{"postgres", "mysql", "sqlite"}

// Paths every server answers: "/" reads the counter, increments it and
// writes it back; "/read" only reads it.
const (
	pathCounter = "/"
	pathRead    = "/read"
)

// serverConfig is what one server process is built from; the parent passes
// it to the child on its command line (serveArgs).
type serverConfig struct {
	backend string
	server  string
	// schema is the PostgreSQL schema, the MariaDB database, or the SQLite
	// file the tables are in (created by the parent, see newBackend).
	schema string
	// pool is the server's pool size (MaxOpenConns = MaxIdleConns).
	pool int
	// inactivity, when above zero, expires sessions after that long without
	// a save: sqlsessions OnInactivity, scs IdleTimeout, the floor's expiry
	// column. Zero leaves each its default (sqlsessions: the browser
	// session, kept two weeks; scs: 24 hours; floor: two weeks).
	inactivity time.Duration
	// floorRow gives the floor's SELECT a session's row: it also returns a
	// blob (the 12 bytes of sqlsessions' {"counter": 258}) and a version
	// besides the expiry, which it scans and does not decode.
	floorRow bool
	// countStatements counts sqlsessions' store statements (a bun query
	// hook, which costs a little), served with the process's stats.
	countStatements bool
	// cache wraps sqlsessions' store in core.CachingStore (default
	// options); pgnotify feeds it pgnotify's invalidations, through a
	// Listener connected to PostgreSQL directly (SQLSESSIONS_POSTGRES_URL),
	// the triggers installed by the parent.
	cache, pgnotify bool
	pgnDeletes      bool // pgnotify's feed of deletions only
	// pgbouncer says the pool goes through a PgBouncer in transaction
	// mode. The floor then runs its statements with their SQL text instead
	// of database/sql prepared statements, which that mode breaks. And
	// requests are not cancelled when their client goes away (wrk ending a
	// run): pgx interrupts a cancelled query by closing its connection
	// with a cancel request, and PgBouncer 1.18 (Debian's) exits on those
	// ("FATAL ... disconnect_client(): bad client state: 0",
	// https://github.com/pgbouncer/pgbouncer/issues/801).
	pgbouncer bool
	// poolURL is the PostgreSQL URL the pool opens ("": the database's
	// own, SQLSESSIONS_POSTGRES_URL), PgBouncer's with --pgbouncer. The
	// child gets it in its environment (poolURLEnv), not on its command
	// line, since it may hold a password.
	poolURL string
}

// server is one server's handler on its own pool.
type server struct {
	handler http.Handler
	// counts answers countPath as the handler answers pathRead, from the
	// database: sqlsessions' without its cache (the handler's may be older
	// than another instance's last increment).
	counts     http.Handler
	statements *statementCounter // nil unless counting
	closers    []func() error
}

func (s *server) close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	return errors.Join(errs...)
}

// statementCounter is a bun.QueryHook that counts the store's statements.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

// writeCount answers the counter workload.
func writeCount(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Current count: " + strconv.Itoa(n)))
}

// oursHandler is the seed's handler on sqlsessions. Keep it one small
// function: it is the part to change when the examples' handler changes.
func oursHandler(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := httpadapter.FromContext(ctx)
	var (
		n   int
		err error
	)
	if r.URL.Path == pathRead {
		n, _, err = core.Get[int](ctx, s, "counter")
	} else {
		// What the examples do: an atomic increment.
		n, err = core.Update(ctx, s, "counter", func(n int, _ bool) (int, error) { return n + 1, nil })
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeCount(w, n)
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

// floor is the hand-written floor: its own random cookie token, one prepared
// SELECT and one prepared upsert per request on database/sql, the same
// driver and pool as the others, an index on the expiry, no session library.
type floor struct {
	// load and upsert run the two statements: prepared, or with their SQL
	// text (serverConfig.pgbouncer).
	load, upsert stmt
	arg          func(time.Time) any // expiry column argument
	row          bool                // load also returns data, expiry, version (serverConfig.floorRow)
	ttl          time.Duration       // the expiry a write sets
}

const floorCookie = "id"

// defaultFloorTTL is how long a floor session lives without --inactivity.
const defaultFloorTTL = 14 * 24 * time.Hour

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := time.Now()
	var token string
	n := 0
	if c, err := r.Cookie(floorCookie); err == nil && len(c.Value) == 22 {
		token = c.Value
		switch err := f.scan(f.load.row(ctx, token, f.arg(now)), &n); {
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
		if _, err := f.upsert.exec(ctx, token, n, f.arg(now.Add(f.ttl))); err != nil {
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

// floorRowBlob is the blob of a floor row with floorRow, as a hex string.
const floorRowBlob = "81a7636f756e746572cd0102"

// tableSQL is the SQL of one backend's scs and floor tables.
type tableSQL struct {
	ddl       []string // scs's table, then the floor's: %s in the floor's CREATE is for floorCols
	floorCols string   // the columns floorRow adds
	floorLoad string   // %s is for the columns it returns
	floorUps  string
	floorArg  func(time.Time) any
	// handmade's statements: bunstore's, on the table handmadeTable.
	handmadeLoad, handmadeSave, handmadeCreate string
	tidy                                       []string // before each workload
	settle                                     []string // before each measured round
	oursSchema                                 bool     // bunstore gets WithSchemaName(schema)
}

// tablesOf returns the SQL of backend's tables in schema.
func tablesOf(backend, schema string) (tableSQL, error) {
	switch backend {
	case "postgres":
		ft := `"` + schema + `".floor`
		ht := `"` + schema + `".` + handmadeTable
		ts := tableSQL{
			ddl: []string{
				`CREATE TABLE "` + schema + `".sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`,
				`CREATE INDEX sessions_expiry_idx ON "` + schema + `".sessions (expiry)`,
				`CREATE TABLE ` + ft + ` (token TEXT PRIMARY KEY, counter BIGINT NOT NULL, expiry TIMESTAMPTZ NOT NULL%s)`,
				`CREATE INDEX floor_expiry_idx ON ` + ft + ` (expiry)`,
			},
			floorCols: `, data BYTEA NOT NULL DEFAULT '\x` + floorRowBlob + `', version BIGINT NOT NULL DEFAULT 1`,
			floorLoad: `SELECT %s FROM ` + ft + ` WHERE token = $1 AND expiry > $2`,
			floorUps:  `INSERT INTO ` + ft + ` (token, counter, expiry) VALUES ($1, $2, $3) ON CONFLICT (token) DO UPDATE SET counter = EXCLUDED.counter, expiry = EXCLUDED.expiry`,
			floorArg:  func(t time.Time) any { return t },
			// Vacuumed before each workload, so autovacuum does not clean
			// up one server's dead rows in another's round.
			tidy: []string{
				`VACUUM (ANALYZE) "` + schema + `".session`, `VACUUM (ANALYZE) "` + schema + `".sessions`, `VACUUM (ANALYZE) ` + ft,
				`VACUUM (ANALYZE) ` + ht,
			},
			// No server pays for a checkpoint of another one's writes.
			settle:     []string{"CHECKPOINT"},
			oursSchema: true,
		}
		ts.handmadeSQL(ht, func(n int) string { return "$" + strconv.Itoa(n) }, true)
		return ts, nil
	case "mysql":
		ts := tableSQL{
			ddl: []string{
				"CREATE TABLE sessions (token CHAR(43) PRIMARY KEY, data BLOB NOT NULL, expiry TIMESTAMP(6) NOT NULL)",
				"CREATE INDEX sessions_expiry_idx ON sessions (expiry)",
				"CREATE TABLE floor (token CHAR(22) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, counter BIGINT NOT NULL, expiry DATETIME(6) NOT NULL%s, INDEX floor_expiry_idx (expiry))",
			},
			floorCols: ", data BLOB NOT NULL DEFAULT x'" + floorRowBlob + "', version BIGINT NOT NULL DEFAULT 1",
			floorLoad: "SELECT %s FROM floor WHERE token = ? AND expiry > ?",
			floorUps:  "INSERT INTO floor (token, counter, expiry) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE counter = VALUES(counter), expiry = VALUES(expiry)",
			floorArg:  func(t time.Time) any { return t.UTC() },
			// InnoDB purges old row versions in the background; ANALYZE
			// refreshes the statistics the three tables are planned with.
			tidy:       []string{"ANALYZE TABLE `" + schema + "`.session, sessions, floor, " + handmadeTable},
			oursSchema: true,
		}
		ts.handmadeSQL(handmadeTable, func(int) string { return "?" }, false)
		return ts, nil
	case "sqlite":
		ts := tableSQL{
			ddl: []string{
				"CREATE TABLE sessions (token TEXT PRIMARY KEY, data BLOB NOT NULL, expiry REAL NOT NULL)",
				"CREATE INDEX sessions_expiry_idx ON sessions(expiry)",
				"CREATE TABLE floor (token TEXT PRIMARY KEY, counter INTEGER NOT NULL, expiry INTEGER NOT NULL%s)",
				"CREATE INDEX floor_expiry_idx ON floor (expiry)",
			},
			floorCols: ", data BLOB NOT NULL DEFAULT x'" + floorRowBlob + "', version INTEGER NOT NULL DEFAULT 1",
			floorLoad: "SELECT %s FROM floor WHERE token = ? AND expiry > ?",
			floorUps:  "INSERT INTO floor (token, counter, expiry) VALUES (?, ?, ?) ON CONFLICT (token) DO UPDATE SET counter = excluded.counter, expiry = excluded.expiry",
			floorArg:  func(t time.Time) any { return t.UnixMicro() },
			tidy:      []string{"ANALYZE"},
			settle:    []string{"PRAGMA wal_checkpoint(TRUNCATE)"},
		}
		ts.handmadeSQL(handmadeTable, func(int) string { return "?" }, true)
		return ts, nil
	}
	return tableSQL{}, fmt.Errorf("unknown backend %q (want postgres, mysql or sqlite)", backend)
}

// handmadeSQL sets handmade's statements on table t, whose n-th argument
// is ph(n): bunstore's load, save and create, as it renders them
// (onConflict: the INSERT leaves an existing id alone; MySQL reports it as
// an error instead).
func (ts *tableSQL) handmadeSQL(t string, ph func(int) string, onConflict bool) {
	ts.handmadeLoad = "SELECT data, expiry_date, version, created_at, user_key FROM " + t + " WHERE (id = " + ph(1) + ") AND (expiry_date > " + ph(2) + ")"
	ts.handmadeSave = "UPDATE " + t + " SET data = " + ph(1) + ", expiry_date = " + ph(2) + ", user_key = " + ph(3) +
		", version = version + 1 WHERE (id = " + ph(4) + ") AND (version = " + ph(5) + ")"
	ts.handmadeCreate = "INSERT INTO " + t + " (id, data, expiry_date, version, created_at, user_key) VALUES (" +
		ph(1) + ", " + ph(2) + ", " + ph(3) + ", 1, " + ph(4) + ", " + ph(5) + ")"
	if onConflict {
		ts.handmadeCreate += " ON CONFLICT (id) DO NOTHING"
	}
}

func setPool(db *sql.DB, n int) {
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
}

// mysqlConfig returns the MySQL server of SQLSESSIONS_MYSQL_URL (a
// go-sql-driver DSN or a mysql:// URL, read by internal/dburl as every
// module's tests read it), with parseTime=true and loc=UTC: bunstore and the
// floor write times in UTC.
func mysqlConfig() (*mysql.Config, error) {
	dsn, err := dburl.MySQLDSNFromEnv()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dburl.EnvMySQL, err)
	}
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dburl.EnvMySQL, err)
	}
	c.ParseTime = true
	c.Loc = time.UTC
	return c, nil
}

// openDB opens a pool of size pool on backend, in schema (the MariaDB
// database, the SQLite file; PostgreSQL statements name their schema), or
// on the configured database when schema is "" (not for SQLite). pgURL, if
// not "", replaces SQLSESSIONS_POSTGRES_URL.
func openDB(ctx context.Context, backend, schema, pgURL string, pool int) (*bun.DB, error) {
	var db *bun.DB
	switch backend {
	case "postgres":
		if pgURL == "" {
			pgURL = dburl.PostgresURLFromEnv()
		}
		sqldb, err := sql.Open("pgx", pgURL)
		if err != nil {
			return nil, err
		}
		setPool(sqldb, pool)
		db = bun.NewDB(sqldb, pgdialect.New())
	case "mysql":
		c, err := mysqlConfig()
		if err != nil {
			return nil, err
		}
		if schema != "" {
			c.DBName = schema
		}
		sqldb, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			return nil, err
		}
		setPool(sqldb, pool)
		db = bun.NewDB(sqldb, mysqldialect.New(mysqldialect.WithTimeLocation("UTC")))
	case "sqlite":
		// sqlitewasm: ncruces/go-sqlite3 (no cgo), WAL, synchronous=NORMAL,
		// busy_timeout, MaxIdleConns = MaxOpenConns; scs and the floor get
		// the same *sql.DB.
		var err error
		if db, err = sqlitewasm.Open(schema, sqlitewasm.WithMaxOpenConns(pool)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown backend %q (want postgres, mysql or sqlite)", backend)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", backend, err)
	}
	return db, nil
}

// newServer builds cfg's server on a pool of its own, on the tables the
// parent created.
func newServer(ctx context.Context, cfg serverConfig) (_ *server, err error) {
	ts, err := tablesOf(cfg.backend, cfg.schema)
	if err != nil {
		return nil, err
	}
	db, err := openDB(ctx, cfg.backend, cfg.schema, cfg.poolURL, cfg.pool)
	if err != nil {
		return nil, err
	}
	s := &server{closers: []func() error{db.Close}}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	switch cfg.server {
	case serverOurs:
		var opts []bunstore.Option
		if ts.oursSchema {
			opts = append(opts, bunstore.WithSchemaName(cfg.schema))
		}
		storeDB := db
		if cfg.countStatements {
			// The hook sits on the store's *bun.DB, which runs the
			// store's statements on its query path.
			s.statements = &statementCounter{}
			storeDB = db.WithQueryHook(s.statements)
			opts = append(opts, bunstore.WithBunQueryHooks())
		}
		store, err := bunstore.New(storeDB, opts...)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, store.Close)
		hopts := []httpadapter.Option{httpadapter.WithSecure(false)}
		if cfg.inactivity > 0 {
			hopts = append(hopts, httpadapter.WithExpiry(core.OnInactivity(cfg.inactivity)))
		}
		var served core.Store = store
		if cfg.cache || cfg.pgnotify {
			cache := core.NewCachingStore(store, core.CachingOptions{})
			served = cache
			if cfg.pgnotify {
				stop, err := listen(ctx, cache, cfg.pgnDeletes)
				if err != nil {
					return nil, err
				}
				s.closers = append(s.closers, stop)
			}
		}
		mgr, err := httpadapter.New(served, hopts...)
		if err != nil {
			return nil, err
		}
		s.handler = mgr.Middleware(http.HandlerFunc(oursHandler))
		if served != core.Store(store) {
			direct, err := httpadapter.New(store, hopts...)
			if err != nil {
				return nil, err
			}
			s.counts = direct.Middleware(http.HandlerFunc(oursHandler))
		}
	case serverSCS:
		sm := scs.New()
		switch cfg.backend {
		case "postgres":
			sm.Store = postgresstore.NewWithConfig(db.DB, postgresstore.Config{TableName: cfg.schema + ".sessions"})
		case "mysql":
			sm.Store = mysqlstore.NewWithCleanupInterval(db.DB, 0)
		case "sqlite":
			sm.Store = sqlite3store.NewWithConfig(db.DB, sqlite3store.Config{})
		}
		sm.Cookie.Secure = false
		if cfg.inactivity > 0 {
			// scs has no expiry on inactivity alone: IdleTimeout within
			// its default Lifetime (24 hours) is as close as it gets. It
			// makes scs write the session at every request, reads too.
			sm.IdleTimeout = cfg.inactivity
		}
		s.handler = scsHandler(sm)
	case serverFloor:
		f := &floor{arg: ts.floorArg, ttl: defaultFloorTTL}
		if cfg.inactivity > 0 {
			f.ttl = cfg.inactivity
		}
		returned := "counter"
		if cfg.floorRow {
			returned, f.row = "counter, data, expiry, version", true
		}
		load := fmt.Sprintf(ts.floorLoad, returned)
		if f.load, err = s.prepare(ctx, db.DB, load, cfg.pgbouncer); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.backend, err)
		}
		if f.upsert, err = s.prepare(ctx, db.DB, ts.floorUps, cfg.pgbouncer); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.backend, err)
		}
		s.handler = f
	case serverHandmade:
		h := &handmade{arg: ts.floorArg, ttl: defaultFloorTTL}
		if cfg.inactivity > 0 {
			h.ttl = cfg.inactivity
		}
		h.maxAge = int(h.ttl / time.Second)
		for _, x := range []struct {
			st    *stmt
			query string
		}{{&h.load, ts.handmadeLoad}, {&h.save, ts.handmadeSave}, {&h.create, ts.handmadeCreate}} {
			if *x.st, err = s.prepare(ctx, db.DB, x.query, cfg.pgbouncer); err != nil {
				return nil, fmt.Errorf("%s: %w", cfg.backend, err)
			}
		}
		s.handler = h
	default:
		return nil, fmt.Errorf("unknown server %q (want %s)", cfg.server, strings.Join(serverChoices, ", "))
	}
	if s.counts == nil {
		s.counts = s.handler
	}
	return s, nil
}

// prepare returns query's stmt on db (its SQL text with each call if text),
// closed with s.
func (s *server) prepare(ctx context.Context, db *sql.DB, query string, text bool) (stmt, error) {
	st, err := prepareStmt(ctx, db, query, text)
	if err == nil {
		s.closers = append(s.closers, st.close)
	}
	return st, err
}

// listenTimeout bounds how long a server process waits for its pgnotify
// listener to report the feed up before it serves.
const listenTimeout = 30 * time.Second

// listen runs a pgnotify Listener for cache on its own connection to
// PostgreSQL (SQLSESSIONS_POSTGRES_URL: directly, never through PgBouncer,
// whose transaction mode loses notifications), the triggers installed by
// the parent, and waits until the feed is up, so that the measured run has
// the cache's FeedTTL (with deletesOnly, pgnotify's feed of deletions only:
// still its TTL, and no eviction for a save elsewhere). stop ends it.
func listen(ctx context.Context, cache *core.CachingStore, deletesOnly bool) (stop func() error, err error) {
	l, err := pgnotify.New(dburl.PostgresURLFromEnv(), cache, pgnotify.Options{SkipInstall: true, DeletesOnly: deletesOnly})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stop = func() error {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	deadline := time.Now().Add(listenTimeout)
	for !l.Listening() {
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("pgnotify: the listener is not listening after %s", listenTimeout), stop())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stop, nil
}

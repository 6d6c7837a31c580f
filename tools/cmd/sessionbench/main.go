// Command sessionbench measures the seed's counter workload over HTTP on
// PostgreSQL, MariaDB/MySQL and SQLite, three servers side by side (a fourth
// on request):
//
//   - sqlsessions: httpadapter + bunstore;
//   - scs: alexedwards/scs v2 with its store for that database
//     (postgresstore on pgx, mysqlstore, sqlite3store on ncruces/go-sqlite3);
//   - floor: hand-written database/sql, one prepared SELECT and one prepared
//     upsert per request, its own cookie token, an index on the expiry, no
//     session library: the best a hand-written equivalent does;
//   - handmade, only when --servers names it: sqlsessions' work written by
//     hand on database/sql (a hashed token, sqlsessions' row and statements,
//     MessagePack, the cookie at each write, a retry after a conflicting
//     write), so floor -> handmade is what that work costs and handmade ->
//     sqlsessions what the library adds (see handmade).
//
// Each server runs in a process of its own (this program re-executed with
// the hidden subcommand "serve"), on its own pool of the same size with the
// same driver, and the load comes from wrk (https://github.com/wg/wrk;
// Debian: apt-get install -y wrk), another process: a load generator in the
// server's process spends about as much CPU as the server and hides
// differences between servers. For each database sessionbench creates one
// fresh schema (database, file) with the three servers' tables, dropped at
// the end, and runs, per workload, interleaved rounds whose order rotates
// (sqlsessions, scs, floor; then scs, floor, sqlsessions; ...). In a round
// one server runs alone: its process starts, gets --sessions sessions
// seeded (over HTTP, by this process), --warmup of unmeasured load, then
// --duration of wrk with --concurrency connections, each request carrying
// the cookie of one seeded session at random; then it stops. Every response
// is checked (status, body, cookie); a failed request or a socket error is
// an error, and a run with errors is not a result (exit status 1).
//
// It reports per server: req/s, wrk's p50 and p99 latency, the CPU time of
// the server's process per request (utime+stime of /proc/PID/stat: every
// thread, before and after the round), that of the database server's
// processes per request (PostgreSQL's or MariaDB's processes, found by name;
// SQLite runs in the server's process), allocations, GC and system calls
// per request, errors; and the ratios sqlsessions/floor, sqlsessions/scs and
// sqlsessions/handmade, of the totals and the median of the per-round ratios.
//
// Workloads: counter (read the counter, increment, write it back), read
// (read only) and new (no cookie: a new session per request).
//
// By default wrk's connections never wait, which measures each server at
// full load. --pause D makes each connection wait D between a response and
// its next request, so every server gets about the same rate below
// saturation and CPU per request compares what a request costs, without
// what the slower server's queueing adds at full load:
//
//	go run ./cmd/sessionbench --preset seed --pause 12ms
//
// # Many instances on one database
//
// --servers picks the servers (the ratios that need one left out are not
// reported). --instances N (up to 4) runs each server as N processes on the
// same tables, each with its own pool, under N wrk processes started
// together, one per instance, with --concurrency/N connections and
// --threads/N threads (at least one) each, all naming the same sessions.
// The sessions are seeded through the first instance only: the others find
// them in the database. Requests, errors and req/s are sums, the server CPU
// per request that of the N processes over all requests, p50 and p99 the
// highest wrk process's. The counters are summed through the first
// instance on a path that reads the database, not sqlsessions' cache.
//
// --cache wraps sqlsessions' store in core.CachingStore (default options:
// TTL 1 s). --pgnotify (PostgreSQL; implies --cache) feeds the cache
// pgnotify's invalidations as docs/many-instances.md wires them: the parent
// installs the triggers once, and each server process runs a Listener on a
// connection of its own straight to PostgreSQL, and serves once it listens.
// --pgbouncer (PostgreSQL) starts Debian's PgBouncer (/usr/sbin/pgbouncer)
// in transaction mode on a free loopback port, with default_pool_size =
// instances x --pool, and the server processes' pools go through it with
// pgx's default_query_exec_mode=exec (scs and bunstore need nothing else;
// the floor runs its statements unprepared, since database/sql's prepared
// statements do not survive transaction pooling). Under --pgbouncer the
// servers do not cancel a request whose client went away: pgx would close
// the connection with a cancel request, and PgBouncer 1.18 exits on those
// (https://github.com/pgbouncer/pgbouncer/issues/801). PgBouncer's CPU per
// request is reported apart from the database's. The report states the
// configuration (servers, instances, cache, pgnotify, pgbouncer).
//
//	go run ./cmd/sessionbench --preset seed --backends postgres --servers sqlsessions,floor --instances 2 --cache --pgnotify --pgbouncer
//
//	go run ./cmd/sessionbench --preset seed
//	go run ./cmd/sessionbench --backends postgres,mysql,sqlite --duration 5s --rounds 3
//
// --preset seed runs the seed examples' settings: a pool of 10 connections
// (MaxOpenConns = MaxIdleConns) for the three servers on PostgreSQL and
// MariaDB, SQLite's 4 (what sqlitewasm.Open gives examples/sqlite; a file in
// WAL mode), sessions expiring after 10 s of inactivity (sqlsessions
// OnInactivity(10s); scs IdleTimeout 10s within its 24 h Lifetime, which
// makes it write at every request; the floor a 10 s expiry), 32 wrk
// connections and 2,000 sessions. Flags given beside it override it.
//
// Without a preset, 10,000 sessions per server (a small site's live
// sessions; with a few hundred, PostgreSQL plans the lookup as a scan of the
// whole table, and with 32 connections 6 % of requests collide with another
// on the same session), pools of 32 (SQLite 4), each library's default
// expiry.
//
// Databases: SQLSESSIONS_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and
// SQLSESSIONS_MYSQL_URL (default
// root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC, a go-sql-driver DSN
// or a mysql:// URL read by internal/dburl; parseTime=true&loc=UTC are
// enforced).
// The server processes inherit them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/pgbouncer"
)

// defaultSessions is how many sessions each server gets seeded with unless
// --sessions or a preset says otherwise (see the package doc for why not a
// few hundred).
const defaultSessions = 10_000

// presetSeed names the seed examples' settings (see the package doc).
const presetSeed = "seed"

// maxInstances bounds --instances: on PostgreSQL each instance holds its
// pool (and its listener), within max_connections.
const maxInstances = 4

// config is what the flags say.
type config struct {
	preset      string
	backends    []string
	workloads   []string
	duration    time.Duration
	warmup      time.Duration
	sessions    int
	concurrency int // wrk connections
	threads     int // wrk threads
	rounds      int
	pool        int // PostgreSQL and MariaDB pool size, per server
	sqlitePool  int
	inactivity  time.Duration // 0: each server's default expiry
	floorRow    bool
	countStmts  bool
	json        bool
	cpuProfile  string // a directory for the server processes' profiles
	wrk         string
	tempDir     string   // where the SQLite file and wrk's files go ("": the system's)
	servers     []string // in serverNames' order
	instances   int      // server processes per server and round, on the same tables
	cache       bool     // sqlsessions behind core.CachingStore
	pgnotify    bool     // the cache fed by pgnotify (PostgreSQL; implies cache)
	pgnDeletes  bool     // pgnotify's feed of deletions only (implies pgnotify)
	pgbouncer   bool     // the servers' pools through PgBouncer in transaction mode (PostgreSQL)
	// pause is how long each wrk connection waits between a response and
	// its next request (whole milliseconds; 0: none, full load).
	pause time.Duration
}

// RoundResult is one server's one round.
type RoundResult struct {
	Requests        int     `json:"requests"`
	Errors          int     `json:"errors"`
	ReqPerSec       float64 `json:"req_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	ServerCPUMicros float64 `json:"server_cpu_us_per_request"`
	DBCPUMicros     float64 `json:"db_cpu_us_per_request"`
}

// ServerResult is one server's totals over all rounds of one workload.
type ServerResult struct {
	Server string `json:"server"`
	// Requests counts the responses of the measured runs, good or bad;
	// Errors the bad ones and the socket errors, warm-ups included.
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"req_per_sec"`
	// P50Ms and P99Ms are the medians of the rounds' percentiles, as wrk
	// measured them.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// ServerCPUMicros is the CPU time of the server's process per request,
	// and DBCPUMicros that of the database server's processes (zero for
	// SQLite, which runs in the server's process, and for a database whose
	// processes this machine does not show).
	ServerCPUMicros float64 `json:"server_cpu_us_per_request"`
	DBCPUMicros     float64 `json:"db_cpu_us_per_request"`
	// PgBouncerCPUMicros is the CPU time of the PgBouncer process per
	// request (--pgbouncer), not part of DBCPUMicros.
	PgBouncerCPUMicros float64 `json:"pgbouncer_cpu_us_per_request,omitzero"`
	// AllocsPerRequest and AllocBytesPerRequest are the server process's
	// heap allocations per request, GCMicros its collector's CPU time per
	// request as the Go runtime estimates it (part of ServerCPUMicros).
	AllocsPerRequest     float64 `json:"allocs_per_request"`
	AllocBytesPerRequest float64 `json:"alloc_bytes_per_request"`
	GCMicros             float64 `json:"gc_cpu_us_per_request"`
	// ReadCallsPerRequest and WriteCallsPerRequest are the server process's
	// read and write system calls per request.
	ReadCallsPerRequest  float64 `json:"read_syscalls_per_request"`
	WriteCallsPerRequest float64 `json:"write_syscalls_per_request"`
	// StatementsPerRequest is the store statements per measured request
	// (sqlsessions, with --count-statements).
	StatementsPerRequest float64 `json:"statements_per_request,omitempty"`
	// CountBefore and CountAfter sum the counters of the seeded sessions
	// before the counter workload's rounds (1 each) and after; Increments
	// counts the good counter responses (warm-ups included). The gain is
	// below Increments when concurrent requests on one session overwrote
	// each other's increment, and may exceed it by the requests in flight
	// when wrk stopped, which it does not count.
	CountBefore int           `json:"count_before,omitempty"`
	CountAfter  int           `json:"count_after,omitempty"`
	Increments  int           `json:"increments,omitempty"`
	Rounds      []RoundResult `json:"rounds"`
}

// WorkloadResult is one workload on one backend.
type WorkloadResult struct {
	Backend  string         `json:"backend"`
	Workload string         `json:"workload"`
	Servers  []ServerResult `json:"servers"`
	// OursPerSCS and OursPerFloor are sqlsessions' req/s over scs's and
	// the floor's, totals of all rounds. The ratios are left out (zero)
	// when --servers leaves out one of their servers.
	OursPerSCS   float64 `json:"sqlsessions_per_scs,omitzero"`
	OursPerFloor float64 `json:"sqlsessions_per_floor,omitzero"`
	// RoundsPerSCS and RoundsPerFloor are the same ratios round by round:
	// their spread shows how much of a difference is noise.
	RoundsPerSCS   Spread `json:"rounds_sqlsessions_per_scs,omitzero"`
	RoundsPerFloor Spread `json:"rounds_sqlsessions_per_floor,omitzero"`
	// CPUOursPerSCS and CPUOursPerFloor are sqlsessions' server CPU per
	// request over scs's and the floor's (totals).
	CPUOursPerSCS   float64 `json:"server_cpu_sqlsessions_per_scs,omitzero"`
	CPUOursPerFloor float64 `json:"server_cpu_sqlsessions_per_floor,omitzero"`
	// The same three against handmade, when it ran: what the library adds
	// to the work it does.
	OursPerHandmade    float64 `json:"sqlsessions_per_handmade,omitzero"`
	RoundsPerHandmade  Spread  `json:"rounds_sqlsessions_per_handmade,omitzero"`
	CPUOursPerHandmade float64 `json:"server_cpu_sqlsessions_per_handmade,omitzero"`
}

// versus are the servers sqlsessions' ratios are taken against, in the
// order the report prints them.
var versus = []string{serverFloor, serverHandmade, serverSCS}

// ratios returns where w holds sqlsessions' ratios to server other (one of
// versus): req/s of the totals, per round, and server CPU per request.
func (w *WorkloadResult) ratios(other string) (rate *float64, rounds *Spread, cpu *float64) {
	switch other {
	case serverSCS:
		return &w.OursPerSCS, &w.RoundsPerSCS, &w.CPUOursPerSCS
	case serverFloor:
		return &w.OursPerFloor, &w.RoundsPerFloor, &w.CPUOursPerFloor
	case serverHandmade:
		return &w.OursPerHandmade, &w.RoundsPerHandmade, &w.CPUOursPerHandmade
	}
	panic("sessionbench: no ratios to " + other)
}

// server returns the result of server name, if it ran.
func (w WorkloadResult) server(name string) (ServerResult, bool) {
	for _, s := range w.Servers {
		if s.Server == name {
			return s, true
		}
	}
	return ServerResult{}, false
}

// Spread summarises per-round values.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	v = slices.Sorted(slices.Values(v))
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: m, Min: v[0], Max: v[len(v)-1]}
}

// Report is a whole run.
type Report struct {
	// Load says where the load came from: wrk, in a process of its own,
	// against each server in a process of its own.
	Load        string `json:"load"`
	Preset      string `json:"preset,omitempty"`
	Sessions    int    `json:"sessions"`
	Concurrency int    `json:"concurrency"`
	Threads     int    `json:"wrk_threads"`
	Rounds      int    `json:"rounds"`
	Duration    string `json:"duration_per_round"`
	Warmup      string `json:"warmup_per_round"`
	Pool        int    `json:"pool"`
	SQLitePool  int    `json:"sqlite_pool"`
	Inactivity  string `json:"inactivity,omitempty"`
	FloorRow    bool   `json:"floor_row,omitempty"`
	// PauseMs is --pause: each wrk connection's wait between a response
	// and its next request.
	PauseMs int64 `json:"pause_ms,omitempty"`
	// Servers are the servers run (--servers).
	Servers []string `json:"servers"`
	// Instances is how many processes of each server ran at once on the
	// same tables, each under a wrk process of its own.
	Instances int `json:"instances"`
	// Cache says whether sqlsessions ran behind core.CachingStore (default
	// options), PGNotify whether the cache got pgnotify's invalidation
	// feed, PgBouncer whether the pools went through a PgBouncer in
	// transaction mode (PgBouncerPoolSize: its default_pool_size).
	Cache             bool             `json:"cache"`
	PGNotify          bool             `json:"pgnotify"`
	PGNotifyDeletes   bool             `json:"pgnotify_deletes,omitempty"`
	PgBouncer         bool             `json:"pgbouncer"`
	PgBouncerPoolSize int              `json:"pgbouncer_pool_size,omitempty"`
	Errors            int              `json:"errors"`
	Results           []WorkloadResult `json:"results"`
}

// loadDescription is Report.Load.
const loadDescription = "wrk in its own process; each server in its own process, alone in its round"

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveCommand {
		os.Exit(serveMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(benchMain(os.Args[1:]))
}

func benchMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		return 2
	}
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		if cfg.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			printReport(os.Stdout, rep)
		}
	}
	if err == nil && rep.Errors > 0 {
		err = fmt.Errorf("%d requests failed: this run is not a result", rep.Errors)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		return 1
	}
	return 0
}

func splitList(s string, allowed []string) ([]string, error) {
	var out []string
	for _, x := range strings.Split(s, ",") {
		x = strings.TrimSpace(x)
		if x == "" {
			continue
		}
		if !slices.Contains(allowed, x) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", x, strings.Join(allowed, ","))
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list (want some of %s)", strings.Join(allowed, ","))
	}
	return out, nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.preset, "preset", "", `"seed": the seed examples' settings (pool 10, SQLite 4, OnInactivity(10s) and its equivalents, 32 connections, 2,000 sessions); flags given beside it override it`)
	backends := fs.String("backends", "postgres,mysql,sqlite", "databases to run: postgres, mysql, sqlite")
	workloads := fs.String("workloads", "counter,read,new", "workloads: counter (read+increment+write), read (read only), new (a new session per request)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured load on one server per round (whole seconds: wrk takes nothing finer)")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load on each server before its measured run, every round (whole seconds; 0 for none)")
	fs.IntVar(&cfg.sessions, "sessions", defaultSessions, "sessions seeded per server and round (a small working set such as 200 makes PostgreSQL scan the whole table for every lookup, and many requests collide on one session)")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "wrk's connections")
	fs.IntVar(&cfg.threads, "threads", 2, "wrk's threads (at most --concurrency)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds per server; the order rotates each round, so a multiple of 3 puts every server in every position equally often")
	fs.IntVar(&cfg.pool, "pool", 32, "PostgreSQL and MariaDB pool size of each server (MaxOpenConns = MaxIdleConns)")
	fs.IntVar(&cfg.sqlitePool, "sqlite-pool", 4, "SQLite pool size of each server (MaxOpenConns = MaxIdleConns)")
	fs.DurationVar(&cfg.inactivity, "inactivity", 0, "expire sessions after this long without a write: sqlsessions OnInactivity, scs IdleTimeout (which writes at every request), the floor's expiry; 0 leaves each its default")
	fs.BoolVar(&cfg.floorRow, "floor-row", false, "give the floor's rows a session's shape: its SELECT also returns a 12-byte blob and a version besides the expiry (scanned, not decoded), so read compares sqlsessions with a hand-written lookup of the same row; its writes do not change")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.BoolVar(&cfg.countStmts, "count-statements", false, "count sqlsessions' store statements (a query hook, which costs a little) and report them per request: above 2 per counter request means saves met concurrent writes and reloaded")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write each server process's CPU profile (its whole life: seeding, warm-up, measured run) into this directory, one file per backend, workload, round and server")
	fs.StringVar(&cfg.wrk, "wrk", "wrk", "the wrk binary")
	servers := fs.String("servers", strings.Join(serverNames, ","), "servers to run: sqlsessions, scs, floor, and handmade (sqlsessions' work on a counter request written by hand: not run by default) (a ratio that needs a server left out is not reported)")
	fs.IntVar(&cfg.instances, "instances", 1, "server processes per server and round (1-4), on the same tables: wrk runs one process per instance with --concurrency/N connections and --threads/N threads (at least 1), all with the same sessions, seeded through instance 1 only; results and CPU are summed")
	fs.BoolVar(&cfg.cache, "cache", false, "sqlsessions wraps its store in core.CachingStore (default options: TTL 1 s)")
	fs.BoolVar(&cfg.pgnotify, "pgnotify", false, "PostgreSQL: the cache gets pgnotify's invalidation feed (the parent installs the triggers once; a Listener per server process, connected directly); implies --cache")
	fs.BoolVar(&cfg.pgnDeletes, "pgnotify-deletes", false, "PostgreSQL: like --pgnotify, with pgnotify's feed of deletions only (InstallDeletes, Options.DeletesOnly: saves notify nobody, the cache keeps its TTL); implies --pgnotify")
	fs.DurationVar(&cfg.pause, "pause", 0, "each wrk connection waits this long between a response and its next request (whole milliseconds; 0: none, full load): every server then gets about the same request rate below saturation, so CPU per request compares what a request costs, without what queueing at full load adds to it")
	fs.BoolVar(&cfg.pgbouncer, "pgbouncer", false, "PostgreSQL: the server processes' pools go through a PgBouncer ("+pgbouncer.Path+") in transaction mode that sessionbench starts, with default_query_exec_mode=exec; the floor runs its statements unprepared, and the servers do not cancel a request whose client went away (PgBouncer 1.18 exits on the cancel requests pgx then sends: pgbouncer issue 801)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch cfg.preset {
	case "":
	case presetSeed:
		for name, apply := range map[string]func(){
			"pool":        func() { cfg.pool = 10 },
			"sqlite-pool": func() { cfg.sqlitePool = 4 },
			"inactivity":  func() { cfg.inactivity = 10 * time.Second },
			"concurrency": func() { cfg.concurrency = 32 },
			"sessions":    func() { cfg.sessions = 2000 },
		} {
			if !set[name] {
				apply()
			}
		}
	default:
		return cfg, fmt.Errorf("--preset: unknown %q (want %s)", cfg.preset, presetSeed)
	}
	var err error
	if cfg.backends, err = splitList(*backends, backendNames); err != nil {
		return cfg, fmt.Errorf("--backends: %w", err)
	}
	if cfg.workloads, err = splitList(*workloads, workloadNames); err != nil {
		return cfg, fmt.Errorf("--workloads: %w", err)
	}
	chosen, err := splitList(*servers, serverChoices)
	if err != nil {
		return cfg, fmt.Errorf("--servers: %w", err)
	}
	for _, s := range serverChoices {
		if slices.Contains(chosen, s) {
			cfg.servers = append(cfg.servers, s)
		}
	}
	cfg.pgnotify = cfg.pgnotify || cfg.pgnDeletes
	cfg.cache = cfg.cache || cfg.pgnotify
	postgresOnly := !slices.ContainsFunc(cfg.backends, func(b string) bool { return b != "postgres" })
	switch {
	case cfg.duration < time.Second || cfg.duration > 10*time.Minute || cfg.duration%time.Second != 0:
		return cfg, errors.New("--duration must be whole seconds in [1s, 10m]")
	case cfg.warmup < 0 || cfg.warmup > time.Minute || cfg.warmup%time.Second != 0:
		return cfg, errors.New("--warmup must be whole seconds in [0, 1m]")
	case cfg.sessions < 1 || cfg.sessions > 100_000:
		return cfg, errors.New("--sessions must be in [1, 100000]")
	case cfg.concurrency < 1 || cfg.concurrency > 1024:
		return cfg, errors.New("--concurrency must be in [1, 1024]")
	case cfg.threads < 1:
		return cfg, errors.New("--threads must be at least 1")
	case cfg.rounds < 1 || cfg.rounds > 100:
		return cfg, errors.New("--rounds must be in [1, 100]")
	case cfg.pool < 1 || cfg.sqlitePool < 1:
		return cfg, errors.New("--pool and --sqlite-pool must be at least 1")
	case cfg.inactivity < 0:
		return cfg, errors.New("--inactivity must not be negative")
	case cfg.pause < 0 || cfg.pause > 10*time.Second || cfg.pause%time.Millisecond != 0:
		return cfg, errors.New("--pause must be whole milliseconds in [0, 10s]")
	case cfg.instances < 1 || cfg.instances > maxInstances:
		return cfg, fmt.Errorf("--instances must be in [1, %d]", maxInstances)
	case cfg.concurrency < cfg.instances:
		return cfg, errors.New("--concurrency must be at least --instances: each instance gets its own connections")
	case cfg.cache && !slices.Contains(cfg.servers, serverOurs):
		return cfg, errors.New("--cache and --pgnotify apply to sqlsessions, which --servers leaves out")
	case cfg.pgnotify && !postgresOnly:
		return cfg, errors.New("--pgnotify needs --backends postgres (LISTEN/NOTIFY is PostgreSQL's)")
	case cfg.pgbouncer && !postgresOnly:
		return cfg, errors.New("--pgbouncer needs --backends postgres")
	case cfg.inactivity > 0 && slices.Contains(cfg.workloads, workloadRead) && cfg.warmup+cfg.duration >= cfg.inactivity:
		// Reading does not renew sqlsessions' or the floor's sessions.
		return cfg, fmt.Errorf("--workloads read with --inactivity %s needs --warmup + --duration below it: sessions that are only read expire", cfg.inactivity)
	}
	cfg.threads = min(cfg.threads, cfg.concurrency)
	return cfg, nil
}

// runner holds what every round of a run needs.
type runner struct {
	cfg    config
	log    io.Writer
	exe    string // this program, for the server processes
	wrk    string // wrk's path
	script string // wrk's Lua script
	dir    string // a temporary directory for the run
}

// run runs every workload of every backend and returns the report; log gets
// progress lines. A backend that fails stops the run with the results so
// far.
func run(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	rep := &Report{
		Load: loadOf(cfg.instances), Preset: cfg.preset,
		Sessions: cfg.sessions, Concurrency: cfg.concurrency, Threads: cfg.threads, Rounds: cfg.rounds,
		Duration: cfg.duration.String(), Warmup: cfg.warmup.String(), Pool: cfg.pool, SQLitePool: cfg.sqlitePool,
		FloorRow: cfg.floorRow, PauseMs: cfg.pause.Milliseconds(), Servers: cfg.servers, Instances: cfg.instances,
		Cache: cfg.cache, PGNotify: cfg.pgnotify, PGNotifyDeletes: cfg.pgnDeletes, PgBouncer: cfg.pgbouncer,
	}
	if cfg.pgbouncer {
		rep.PgBouncerPoolSize = pgBouncerPoolSize(cfg)
	}
	if cfg.inactivity > 0 {
		rep.Inactivity = cfg.inactivity.String()
	}
	r := &runner{cfg: cfg, log: log}
	var err error
	if r.wrk, err = findWrk(cfg.wrk); err != nil {
		return nil, err
	}
	if r.exe, err = os.Executable(); err != nil {
		return nil, err
	}
	if cfg.cpuProfile != "" {
		if err := os.MkdirAll(cfg.cpuProfile, 0o755); err != nil {
			return nil, err
		}
	}
	if r.dir, err = os.MkdirTemp(cfg.tempDir, "sessionbench-run-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.dir)
	if r.script, err = writeScript(r.dir, cfg.pause); err != nil {
		return nil, err
	}
	for _, name := range cfg.backends {
		res, err := r.runBackend(ctx, name)
		for _, w := range res {
			for _, s := range w.Servers {
				rep.Errors += s.Errors
			}
		}
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
	}
	return rep, nil
}

// loadOf is Report.Load.
func loadOf(instances int) string {
	if instances == 1 {
		return loadDescription
	}
	return fmt.Sprintf("%d wrk processes started together, one per instance; each server as %d processes on the same tables, alone in its round", instances, instances)
}

// pgBouncerPoolSize is the default_pool_size of the PgBouncer --pgbouncer
// starts: a server connection for every connection of every instance's
// pool, so that PgBouncer never makes a server process wait.
func pgBouncerPoolSize(cfg config) int { return cfg.instances * cfg.pool }

// round is what one round on one server measured.
type round struct {
	wrk        wrkResult // the wrk processes' results, summed (see sumWrk)
	warmupErrs int
	firstErr   string
	costs      roundCosts
	increments int // good counter responses, warm-up included
	countAfter int // the seeded sessions' counters, summed (counter)
}

func (r round) errors() int { return r.wrk.errors() + r.warmupErrs }

func (r round) rate() float64 {
	return float64(r.wrk.requests-r.wrk.bad) / r.wrk.duration.Seconds()
}

func (r *runner) runBackend(ctx context.Context, name string) (_ []WorkloadResult, err error) {
	b, err := newBackend(ctx, name, r.dir, r.cfg.floorRow)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, b.close()) }()
	if name == "postgres" {
		if err := b.checkConnections(ctx, r.cfg); err != nil {
			return nil, err
		}
		if r.cfg.pgnotify {
			if err := b.installTriggers(ctx, r.cfg.pgnDeletes); err != nil {
				return nil, err
			}
		}
		if r.cfg.pgbouncer {
			if err := b.startPgBouncer(pgBouncerPoolSize(r.cfg)); err != nil {
				return nil, err
			}
			fmt.Fprintf(r.log, "%s: PgBouncer (transaction mode, default_pool_size %d = %d instances x pool %d) on %s\n",
				name, pgBouncerPoolSize(r.cfg), r.cfg.instances, r.cfg.pool, b.pooler.Addr)
		}
	}

	var out []WorkloadResult
	for _, wl := range r.cfg.workloads {
		b.tidy = b.runOrDrop(ctx, b.tidy, r.log)
		rounds := map[string][]round{}
		perRound := map[string][]float64{} // sqlsessions' req/s over each of versus, round by round
		for i := range r.cfg.rounds {
			rate := map[string]float64{}
			for _, s := range roundOrder(r.cfg.servers, i) {
				rd, err := r.runRound(ctx, b, s, wl, i)
				err = errors.Join(err, b.poolerGone())
				if err != nil {
					return out, fmt.Errorf("%s round %d, %s: %w", wl, i+1, s, err)
				}
				rounds[s] = append(rounds[s], rd)
				rate[s] = rd.rate()
				fmt.Fprintf(r.log, "%s/%s round %d %-11s %s\n", name, wl, i+1, s, roundNote(rd, name))
			}
			if ours, ok := rate[serverOurs]; ok {
				for _, o := range versus {
					if other, ok := rate[o]; ok {
						perRound[o] = append(perRound[o], ours/other)
					}
				}
			}
		}
		wr := WorkloadResult{Backend: name, Workload: wl}
		for _, s := range r.cfg.servers {
			wr.Servers = append(wr.Servers, r.serverResult(s, wl, rounds[s]))
		}
		if ours, ok := wr.server(serverOurs); ok {
			for _, o := range versus {
				if other, ok := wr.server(o); ok {
					rate, rounds, cpu := wr.ratios(o)
					*rate, *rounds, *cpu = ours.ReqPerSec/other.ReqPerSec, spreadOf(perRound[o]), ours.ServerCPUMicros/other.ServerCPUMicros
				}
			}
		}
		out = append(out, wr)
	}
	return out, nil
}

// runRound runs server s alone for one round of workload wl: its processes
// (--instances of them, on the same tables) start, get the sessions seeded
// (through the first one) and warmed up, and are measured with one wrk
// process each, all started together; then they stop.
func (r *runner) runRound(ctx context.Context, b *backend, s, wl string, i int) (rd round, err error) {
	cfg := r.cfg
	sc := serverConfig{
		backend: b.name, server: s, schema: b.schema, pool: cfg.pool,
		inactivity: cfg.inactivity, floorRow: cfg.floorRow, countStatements: cfg.countStmts && s == serverOurs,
		cache: cfg.cache && s == serverOurs, pgnotify: cfg.pgnotify && s == serverOurs,
		pgnDeletes: cfg.pgnDeletes && s == serverOurs,
		pgbouncer:  cfg.pgbouncer, poolURL: b.poolURL(),
	}
	if b.name == "sqlite" {
		sc.pool = cfg.sqlitePool
	}
	children := make([]*child, cfg.instances)
	defer func() {
		for _, c := range children {
			if c == nil {
				continue
			}
			err = errors.Join(err, c.stop())
			if w := c.warnings(); w != "" {
				// Requests in flight when wrk stops are cancelled, which
				// sqlsessions logs: a few lines are enough to see what it
				// was.
				lines := strings.Split(w, "\n")
				more := ""
				if len(lines) > 3 {
					lines, more = lines[:3], fmt.Sprintf("\n(%d more lines)", len(lines)-3)
				}
				fmt.Fprintf(r.log, "%s: the server process wrote:\n%s%s\n", c.name, strings.Join(lines, "\n"), more)
			}
		}
	}()
	// Started together: SQLite compiles its WebAssembly build in each.
	errs := make([]error, cfg.instances)
	var wg sync.WaitGroup
	for k := range cfg.instances {
		profile := ""
		if cfg.cpuProfile != "" {
			profile = filepath.Join(cfg.cpuProfile, fmt.Sprintf("%s-%s-%d-%s%s.prof", b.name, wl, i+1, s, instanceSuffix(k, cfg.instances)))
		}
		wg.Go(func() { children[k], errs[k] = startChild(ctx, r.exe, sc, profile) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return rd, err
	}
	if cfg.instances > 1 {
		for k, c := range children {
			c.name += instanceSuffix(k, cfg.instances)
		}
	}
	client := newClient(cfg.concurrency)
	defer client.CloseIdleConnections()

	load := make([]wrkRun, cfg.instances)
	for k, c := range children {
		conns, threads := split(cfg.concurrency, cfg.threads, k, cfg.instances)
		load[k] = wrkRun{
			wrk: r.wrk, script: r.script, url: c.url, workload: wl,
			threads: threads, connections: conns,
		}
	}
	var cookies []string
	first := children[0]
	if wl != workloadNew {
		// Seeded every round: the processes end between rounds, and with
		// --inactivity the sessions expire while other servers run. Only
		// the first instance gets them: the others find them in the
		// database.
		if cookies, err = seed(ctx, client, first.url, cfg.sessions, cfg.concurrency); err != nil {
			return rd, fmt.Errorf("seeding: %w", err)
		}
		file := filepath.Join(r.dir, "cookies")
		if err := os.WriteFile(file, []byte(strings.Join(cookies, "\n")+"\n"), 0o600); err != nil {
			return rd, err
		}
		for k := range load {
			load[k].cookies = file
		}
	}
	if cfg.warmup > 0 {
		warm, err := runWrks(ctx, load, cfg.warmup)
		if err != nil {
			return rd, fmt.Errorf("warm-up: %w", err)
		}
		rd.warmupErrs = warm.errors()
		if rd.warmupErrs > 0 {
			rd.firstErr = "warm-up: " + warm.firstError()
		}
		rd.increments = warm.requests - warm.bad
	}
	b.settle = b.runOrDrop(ctx, b.settle, r.log)

	// The stats requests run outside the measured CPU: before the /proc
	// reading at the start, after it at the end.
	before, err := r.readCosts(ctx, client, children, b, true)
	if err != nil {
		return rd, err
	}
	if rd.wrk, err = runWrks(ctx, load, cfg.duration); err != nil {
		return rd, err
	}
	after, err := r.readCosts(ctx, client, children, b, false)
	if err != nil {
		return rd, err
	}
	rd.costs = after.since(before)
	if rd.wrk.errors() > 0 && rd.firstErr == "" {
		rd.firstErr = rd.wrk.firstError()
	}
	if wl == workloadCounter {
		rd.increments += rd.wrk.requests - rd.wrk.bad
		// Through the first instance, on a path that reads the database,
		// not sqlsessions' cache: a cached counter may be older than an
		// increment another instance made last.
		if rd.countAfter, err = sumCounts(ctx, client, first.url, cookies, cfg.concurrency); err != nil {
			return rd, fmt.Errorf("reading the counters: %w", err)
		}
	}
	return rd, nil
}

// instanceSuffix names instance k of n in file names and messages ("" when
// there is one).
func instanceSuffix(k, n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf("-%d", k+1)
}

// split returns the wrk connections and threads of instance k of n: the
// connections shared out (the first ones get the remainder), the threads
// too but at least one and at most the connections.
func split(connections, threads, k, n int) (int, int) {
	c := connections / n
	if k < connections%n {
		c++
	}
	t := max(threads/n, 1)
	return c, min(t, c)
}

// runWrks runs the wrk processes of load together for d and sums their
// results.
func runWrks(ctx context.Context, load []wrkRun, d time.Duration) (wrkResult, error) {
	res := make([]wrkResult, len(load))
	errs := make([]error, len(load))
	var wg sync.WaitGroup
	for k := range load {
		w := load[k]
		w.duration = d
		wg.Go(func() { res[k], errs[k] = w.run(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return wrkResult{}, err
	}
	return sumWrk(res), nil
}

// readCosts reads the server processes' stats and /proc figures and the
// database's (and PgBouncer's), summed over the processes. At the start
// of a round (start) the stats come first; at the end, last, so that their
// requests stay out of the measured CPU.
func (r *runner) readCosts(ctx context.Context, client *http.Client, children []*child, b *backend, start bool) (costs, error) {
	var sum costs
	stats := func() error {
		for _, c := range children {
			st, err := c.stats(ctx, client)
			if err != nil {
				return err
			}
			sum.stats = sum.stats.plus(st)
		}
		return nil
	}
	if start {
		if err := stats(); err != nil {
			return sum, err
		}
	}
	for _, c := range children {
		p, err := processCosts(c.pid)
		if err != nil {
			return sum, err
		}
		sum.cpu, sum.reads, sum.writes = sum.cpu+p.cpu, sum.reads+p.reads, sum.writes+p.writes
	}
	if b.name != "sqlite" {
		// SQLite's database work is the server processes'.
		sum.db = readDBCPU()
	}
	if b.pooler != nil {
		p, err := processCosts(b.pooler.Pid())
		if err != nil {
			return sum, err
		}
		sum.pooler = p.cpu
	}
	if !start {
		if err := stats(); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// serverResult sums server s's rounds of workload wl.
func (r *runner) serverResult(s, wl string, rounds []round) ServerResult {
	res := ServerResult{Server: s}
	var total roundCosts
	var p50, p99 []float64
	good := 0
	for _, rd := range rounds {
		res.Requests += rd.wrk.requests
		res.Errors += rd.errors()
		if res.FirstErr == "" {
			res.FirstErr = rd.firstErr
		}
		res.Seconds += rd.wrk.duration.Seconds()
		good += rd.wrk.requests - rd.wrk.bad
		total = total.plus(rd.costs)
		p50, p99 = append(p50, ms(rd.wrk.p50)), append(p99, ms(rd.wrk.p99))
		n := float64(max(rd.wrk.requests, 1))
		res.Rounds = append(res.Rounds, RoundResult{
			Requests: rd.wrk.requests, Errors: rd.errors(), ReqPerSec: rd.rate(),
			P50Ms: ms(rd.wrk.p50), P99Ms: ms(rd.wrk.p99),
			ServerCPUMicros: micros(rd.costs.cpu) / n, DBCPUMicros: micros(rd.costs.db) / n,
		})
		if wl == workloadCounter {
			res.CountBefore += r.cfg.sessions // seeded at 1 each, once per round
			res.CountAfter += rd.countAfter
			res.Increments += rd.increments
		}
	}
	res.ReqPerSec = float64(good) / res.Seconds
	res.P50Ms, res.P99Ms = spreadOf(p50).Median, spreadOf(p99).Median
	if res.Requests > 0 {
		n := float64(res.Requests)
		res.ServerCPUMicros = micros(total.cpu) / n
		res.DBCPUMicros = micros(total.db) / n
		res.PgBouncerCPUMicros = micros(total.pooler) / n
		res.AllocsPerRequest = float64(total.allocs) / n
		res.AllocBytesPerRequest = float64(total.allocBytes) / n
		res.GCMicros = micros(total.gc) / n
		res.ReadCallsPerRequest = float64(total.reads) / n
		res.WriteCallsPerRequest = float64(total.writes) / n
		if r.cfg.countStmts && s == serverOurs {
			res.StatementsPerRequest = float64(total.statements) / n
		}
	}
	return res
}

// roundOrder is the order servers run in round r: rotated by one each
// round, so over len(servers) rounds every server runs once in every
// position. A fixed order measured up to 10% apart on PostgreSQL read,
// whatever the previous round left behind (dirty caches, a database still
// writing) falling on the same server every time.
func roundOrder(servers []string, r int) []string {
	n := len(servers)
	order := make([]string, n)
	for i := range n {
		order[i] = servers[(i+r)%n]
	}
	return order
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// roundNote is a round's progress line.
func roundNote(rd round, backend string) string {
	n := float64(max(rd.wrk.requests, 1))
	db := "in the server process"
	if backend != "sqlite" {
		db = fmt.Sprintf("%.0f µs", micros(rd.costs.db)/n)
	}
	note := fmt.Sprintf("%8.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors; CPU per request: server %.0f µs, database %s; %.0f allocs, %.2f reads, %.2f writes per request",
		rd.rate(), ms(rd.wrk.p50), ms(rd.wrk.p99), rd.errors(), micros(rd.costs.cpu)/n, db,
		float64(rd.costs.allocs)/n, float64(rd.costs.reads)/n, float64(rd.costs.writes)/n)
	if rd.firstErr != "" {
		note += "; " + rd.firstErr
	}
	return note
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// pgBouncerNote says whether the pools went through PgBouncer, and its
// pool size.
func pgBouncerNote(rep *Report) string {
	if !rep.PgBouncer {
		return "off"
	}
	return fmt.Sprintf("on (transaction mode, default_pool_size %d = %d instances x pool %d; pgx default_query_exec_mode=exec; the floor unprepared; requests not cancelled when wrk ends, see --pgbouncer)",
		rep.PgBouncerPoolSize, rep.Instances, rep.Pool)
}

// printReport writes the report as text tables.
func printReport(w io.Writer, rep *Report) {
	preset := ""
	if rep.Preset != "" {
		preset = ", preset " + rep.Preset
	}
	expiry := "each server's default expiry"
	if rep.Inactivity != "" {
		expiry = "expiry after " + rep.Inactivity + " of inactivity"
	}
	fmt.Fprintf(w, "load: %s\n%d sessions per server, %d connections (%d wrk threads), %d rounds x %s after %s of warm-up, pool %d (SQLite %d), %s%s\n",
		rep.Load, rep.Sessions, rep.Concurrency, rep.Threads, rep.Rounds, rep.Duration, rep.Warmup, rep.Pool, rep.SQLitePool, expiry, preset)
	if rep.FloorRow {
		fmt.Fprintln(w, "the floor's SELECT returns a session-shaped row (--floor-row)")
	}
	if rep.PauseMs > 0 {
		fmt.Fprintf(w, "each wrk connection pauses %d ms between a response and its next request (--pause): a request rate below saturation\n", rep.PauseMs)
	}
	fmt.Fprintf(w, "configuration: servers %s; instances %d; cache %s; pgnotify %s; pgbouncer %s\n",
		strings.Join(rep.Servers, ","), rep.Instances, onOff(rep.Cache), pgNotifyNote(rep), pgBouncerNote(rep))
	if rep.Instances > 1 {
		fmt.Fprintf(w, "%d server processes and %d wrk processes per round: req/s, requests, errors and CPU are sums, p50 and p99 the highest wrk process's\n",
			rep.Instances, rep.Instances)
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s / %s\n", r.Backend, r.Workload)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		pooler, poolerHead := "", ""
		if rep.PgBouncer {
			poolerHead = "pgbouncer CPU µs/req\t"
		}
		fmt.Fprintln(tw, "server\treq/s\tp50 ms\tp99 ms\terrors\tserver CPU µs/req\tof it GC\tdb CPU µs/req\t"+poolerHead+"allocs/req\tB/req\treads/req\twrites/req\t")
		for _, s := range r.Servers {
			db := "-"
			if r.Backend != "sqlite" {
				db = fmt.Sprintf("%.0f", s.DBCPUMicros)
			}
			if rep.PgBouncer {
				pooler = fmt.Sprintf("%.0f\t", s.PgBouncerCPUMicros)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t%.0f\t%s\t%s%.0f\t%.0f\t%.2f\t%.2f\t\n", s.Server, s.ReqPerSec, s.P50Ms, s.P99Ms, s.Errors,
				s.ServerCPUMicros, s.GCMicros, db, pooler, s.AllocsPerRequest, s.AllocBytesPerRequest, s.ReadCallsPerRequest, s.WriteCallsPerRequest)
		}
		tw.Flush()
		// A ratio whose servers did not both run is zero: not printed.
		for _, o := range versus {
			if rate, rounds, cpu := r.ratios(o); *rate > 0 {
				fmt.Fprintf(w, "%-20s %.2fx (per round: median %.2fx, %.2f-%.2f), server CPU %.2fx\n",
					"sqlsessions/"+o, *rate, rounds.Median, rounds.Min, rounds.Max, *cpu)
			}
		}
		for _, s := range r.Servers {
			if s.StatementsPerRequest > 0 {
				fmt.Fprintf(w, "%s: %.3f store statements per request\n", s.Server, s.StatementsPerRequest)
			}
			if s.Increments > 0 {
				fmt.Fprintf(w, "%s: counters +%d for %d counted increments (%.2f%% lost to concurrent requests on one session, give or take the requests in flight when wrk stopped)\n",
					s.Server, s.CountAfter-s.CountBefore, s.Increments,
					100*(1-float64(s.CountAfter-s.CountBefore)/float64(s.Increments)))
			}
		}
		for _, s := range r.Servers {
			if s.FirstErr != "" {
				fmt.Fprintf(w, "%s: %d errors, first: %s\n", s.Server, s.Errors, s.FirstErr)
			}
		}
	}
	if rep.Errors > 0 {
		fmt.Fprintf(w, "\n%d requests failed: this run is not a result\n", rep.Errors)
	}
}

// pgNotifyNote says whether the cache had pgnotify's feed, and which.
func pgNotifyNote(rep *Report) string {
	if rep.PGNotifyDeletes {
		return "on (deletions only)"
	}
	return onOff(rep.PGNotify)
}

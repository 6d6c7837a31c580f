// Command sessionbench measures the seed's counter workload over HTTP on
// PostgreSQL, MariaDB/MySQL and SQLite, side by side: for each database it
// starts three servers on loopback ports in this process,
//
//   - sqlsessions: httpadapter + bunstore;
//   - scs: alexedwards/scs v2 with its store for that database
//     (postgresstore on pgx, mysqlstore, sqlite3store on ncruces/go-sqlite3);
//   - floor: hand-written database/sql, one prepared SELECT and one prepared
//     upsert per request, its own cookie token, no session library;
//
// all on one fresh schema (database, file) and one pool with the same
// settings, dropped at the end. It seeds --sessions sessions per server,
// then drives each server with --concurrency keep-alive connections, each
// request naming one of the sessions at random, for --duration per round,
// in interleaved rounds whose order rotates (sqlsessions, scs, floor; then
// scs, floor, sqlsessions; ...), and prints req/s, p50, p99, errors and the
// CPU time per request (this process; the database server's processes) per
// server, and the ratios sqlsessions/scs and sqlsessions/floor.
//
// The default of 10,000 seeded sessions is a small site's live sessions. With
// a few hundred, PostgreSQL's plan for the lookup is a sequential scan of the
// whole table, not the primary key (so the run measures row width, not
// sessions), and with 32 connections 6 % of requests run concurrently with
// another on the same session, which browsers rarely do; --sessions 200
// still measures that case.
//
// Workloads: counter (read the counter, increment, write it back), read
// (read only) and new (no cookie: a new session per request).
//
//	go run ./cmd/sessionbench --backends postgres,mysql,sqlite --duration 5s --rounds 2
//
// Databases: SQLSESSIONS_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and
// SQLSESSIONS_MYSQL_URL (default root@tcp(127.0.0.1:3306)/test, a
// go-sql-driver DSN or a mysql:// URL; parseTime=true&loc=UTC are enforced).
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
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore/bunstoretest"
)

// defaultSessions is how many sessions each server gets seeded with unless
// --sessions says otherwise (see the package doc for why not a few hundred).
const defaultSessions = 10_000

// config is what the flags say.
type config struct {
	backends    []string
	workloads   []string
	duration    time.Duration
	warmup      time.Duration
	sessions    int
	concurrency int
	rounds      int
	json        bool
	cpuProfile  string
	memProfile  string
	countStmts  bool
	db          dbConfig
}

// ServerResult is one server's totals over all rounds of one workload.
type ServerResult struct {
	Server    string  `json:"server"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"req_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	// CountBefore and CountAfter sum the counters of the seeded sessions
	// before and after the counter workload; the difference is below the
	// successful requests when concurrent requests on one session
	// overwrote each other's increment.
	CountBefore int `json:"count_before,omitempty"`
	CountAfter  int `json:"count_after,omitempty"`
	// StatementsPerRequest is the store statements per measured request
	// (sqlsessions, with --count-statements).
	StatementsPerRequest float64 `json:"statements_per_request,omitempty"`
	// AppCPUMicros is the CPU time of this process (the server measured and
	// the load generator driving it) per request, and DBCPUMicros that of
	// the local database server's processes (zero for SQLite, which runs in
	// this process, and where /proc cannot be read).
	AppCPUMicros float64 `json:"app_cpu_us_per_request,omitempty"`
	DBCPUMicros  float64 `json:"db_cpu_us_per_request,omitempty"`
	// AllocsPerRequest and AllocBytesPerRequest are this process's heap
	// allocations per request (server and load generator).
	AllocsPerRequest     float64 `json:"allocs_per_request"`
	AllocBytesPerRequest float64 `json:"alloc_bytes_per_request"`
	// GCMicros is the garbage collector's CPU time per request, as the Go
	// runtime estimates it (included in AppCPUMicros).
	GCMicros float64 `json:"gc_cpu_us_per_request"`
	// ReadCallsPerRequest and WriteCallsPerRequest are this process's read
	// and write system calls per request (Linux), client side included.
	ReadCallsPerRequest  float64 `json:"read_syscalls_per_request,omitempty"`
	WriteCallsPerRequest float64 `json:"write_syscalls_per_request,omitempty"`
}

// WorkloadResult is one workload on one backend.
type WorkloadResult struct {
	Backend     string         `json:"backend"`
	Workload    string         `json:"workload"`
	Servers     []ServerResult `json:"servers"`
	OursPerSCS  float64        `json:"sqlsessions_per_scs"`
	OursPerFlor float64        `json:"sqlsessions_per_floor"`
	// RoundsPerSCS and RoundsPerFloor are the same ratios round by round
	// (each round runs the three servers back to back): their spread shows
	// how much of a difference is noise.
	RoundsPerSCS   Spread `json:"rounds_sqlsessions_per_scs"`
	RoundsPerFloor Spread `json:"rounds_sqlsessions_per_floor"`
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
	Sessions    int              `json:"sessions"`
	Concurrency int              `json:"concurrency"`
	Rounds      int              `json:"rounds"`
	Duration    string           `json:"duration_per_round"`
	Pool        int              `json:"pool"`
	SQLitePool  int              `json:"sqlite_pool"`
	FloorRow    bool             `json:"floor_row,omitempty"`
	Results     []WorkloadResult `json:"results"`
}

func main() {
	exit := 0
	defer func() { os.Exit(exit) }() // runs last, after the profile is written
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		exit = 2
		return
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sessionbench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "sessionbench:", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if cfg.memProfile != "" {
		runtime.MemProfileRate = 64 << 10 // finer than the default 512 KiB: requests allocate little
		defer func() {
			if err := writeHeapProfile(cfg.memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "sessionbench:", err)
				exit = 1
			}
		}()
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
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		exit = 1
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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

var backendNames = []string{"postgres", "mysql", "sqlite"}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	backends := fs.String("backends", "postgres,mysql,sqlite", "databases to run: postgres, mysql, sqlite")
	workloads := fs.String("workloads", "counter,read,new", "workloads: counter (read+increment+write), read (read only), new (a new session per request)")
	var cfg config
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of one round against one server")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load on each server before a workload's rounds")
	fs.IntVar(&cfg.sessions, "sessions", defaultSessions, "sessions seeded per server (a small working set such as 200 makes PostgreSQL scan the whole table for every lookup, and many requests collide on one session)")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "concurrent client connections")
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds per server; the order rotates each round, so a multiple of 3 puts every server in every position equally often")
	fs.IntVar(&cfg.db.pool, "pool", 32, "PostgreSQL and MySQL pool size (MaxOpenConns = MaxIdleConns), shared by the three servers")
	fs.IntVar(&cfg.db.sqlitePool, "sqlite-pool", 4, "SQLite pool size (MaxOpenConns = MaxIdleConns)")
	fs.BoolVar(&cfg.db.floorRow, "floor-row", false, "give the floor's rows a session's shape: its SELECT also returns a 12-byte blob and a version besides the expiry (scanned, not decoded), so read compares sqlsessions with a hand-written lookup of the same row; its writes do not change")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.BoolVar(&cfg.countStmts, "count-statements", false, "count sqlsessions' store statements (a query hook, which costs a little) and report them per request: above 2 per counter request means saves met concurrent writes and reloaded")
	fs.StringVar(&cfg.memProfile, "memprofile", "", "write an allocation profile of the whole run to this file (go tool pprof -sample_index=alloc_objects; the servers differ in their stacks: httpadapter, scs, main.(*floor))")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file; each server's goroutines carry the pprof label server=<name> and the load generator's client=<name> (go tool pprof -tags; -tagfocus server=sqlsessions)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.backends, err = splitList(*backends, backendNames); err != nil {
		return cfg, fmt.Errorf("--backends: %w", err)
	}
	if cfg.workloads, err = splitList(*workloads, workloadNames); err != nil {
		return cfg, fmt.Errorf("--workloads: %w", err)
	}
	switch {
	case cfg.duration <= 0 || cfg.duration > 10*time.Minute:
		return cfg, errors.New("--duration must be in (0, 10m]")
	case cfg.warmup < 0 || cfg.warmup > time.Minute:
		return cfg, errors.New("--warmup must be in [0, 1m]")
	case cfg.sessions < 1 || cfg.sessions > 100_000:
		return cfg, errors.New("--sessions must be in [1, 100000]")
	case cfg.concurrency < 1 || cfg.concurrency > 1024:
		return cfg, errors.New("--concurrency must be in [1, 1024]")
	case cfg.rounds < 1 || cfg.rounds > 100:
		return cfg, errors.New("--rounds must be in [1, 100]")
	case cfg.db.pool < 1 || cfg.db.sqlitePool < 1:
		return cfg, errors.New("--pool and --sqlite-pool must be at least 1")
	}
	cfg.db.postgresURL = bunstoretest.PostgresURL()
	if cfg.db.mysqlDSN, err = bunstoretest.MySQLURLToDSN(bunstoretest.MySQLDSN()); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// run runs every workload of every backend and returns the report; log gets
// progress lines. A backend that fails stops the run with the results so
// far.
func run(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	rep := &Report{
		Sessions: cfg.sessions, Concurrency: cfg.concurrency, Rounds: cfg.rounds,
		Duration: cfg.duration.String(), Pool: cfg.db.pool, SQLitePool: cfg.db.sqlitePool, FloorRow: cfg.db.floorRow,
	}
	for _, name := range cfg.backends {
		res, err := runBackend(ctx, name, cfg, log)
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
	}
	return rep, nil
}

func runBackend(ctx context.Context, name string, cfg config, log io.Writer) (_ []WorkloadResult, err error) {
	b, err := openBackend(ctx, name, cfg.db, cfg.cpuProfile != "", cfg.countStmts)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, b.close()) }()

	clients := map[string]*http.Client{}
	for _, s := range serverNames {
		c := newClient(cfg.concurrency)
		defer c.CloseIdleConnections()
		clients[s] = c
	}
	cookies := map[string][]string{}
	for _, s := range serverNames {
		// Seeding dials the client's connections: with labels on, their
		// reading and writing goroutines carry client=<name> too.
		asClient(cfg.cpuProfile != "", ctx, s, func(ctx context.Context) {
			cookies[s], err = seed(ctx, clients[s], b.servers[s].url, cfg.sessions, cfg.concurrency)
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
	}
	fmt.Fprintf(log, "%s: seeded %d sessions per server\n", name, cfg.sessions)

	var out []WorkloadResult
	for _, wl := range cfg.workloads {
		b.tidy = b.runOrDrop(ctx, b.tidy, log)
		totals := map[string]*sample{}
		before := map[string]int{}
		for _, s := range serverNames {
			totals[s] = &sample{}
			if cfg.warmup > 0 {
				asClient(cfg.cpuProfile != "", ctx, s, func(ctx context.Context) {
					drive(ctx, clients[s], b.servers[s].url, cookies[s], wl, cfg.concurrency, cfg.warmup)
				})
			}
			if wl == workloadCounter {
				if before[s], err = sumCounts(ctx, clients[s], b.servers[s].url, cookies[s]); err != nil {
					return out, fmt.Errorf("%s: %w", s, err)
				}
			}
		}
		var stmts0 int64
		if b.statements != nil {
			stmts0 = b.statements.n.Load()
		}
		var perSCS, perFloor []float64 // per-round ratios
		for round := range cfg.rounds {
			rate := map[string]float64{}
			for _, s := range roundOrder(round) {
				b.settle = b.runOrDrop(ctx, b.settle, log)
				var smp sample
				measure := func(ctx context.Context) {
					cpu0 := readCPU()
					smp = drive(ctx, clients[s], b.servers[s].url, cookies[s], wl, cfg.concurrency, cfg.duration)
					smp.cpu = readCPU().sub(cpu0)
				}
				asClient(cfg.cpuProfile != "", ctx, s, measure)
				rate[s] = float64(smp.requests-smp.errors) / smp.elapsed.Seconds()
				fmt.Fprintf(log, "%s/%s round %d %-11s %8.0f req/s, %d errors%s\n", name, wl, round+1, s,
					rate[s], smp.errors, cpuNote(smp))
				totals[s].add(smp)
			}
			if err := ctx.Err(); err != nil {
				return out, err
			}
			perSCS = append(perSCS, rate[serverOurs]/rate[serverSCS])
			perFloor = append(perFloor, rate[serverOurs]/rate[serverFloor])
		}
		wr := WorkloadResult{Backend: name, Workload: wl}
		for _, s := range serverNames {
			t := totals[s]
			sortDurations(t.latencies)
			r := ServerResult{
				Server: s, Requests: t.requests, Errors: t.errors, FirstErr: t.firstErr,
				Seconds:   t.elapsed.Seconds(),
				ReqPerSec: float64(t.requests-t.errors) / t.elapsed.Seconds(),
				P50Ms:     ms(percentile(t.latencies, 0.50)),
				P99Ms:     ms(percentile(t.latencies, 0.99)),
			}
			r.setCosts(*t)
			if s == serverOurs && b.statements != nil {
				r.StatementsPerRequest = float64(b.statements.n.Load()-stmts0) / float64(t.requests)
			}
			if wl == workloadCounter {
				r.CountBefore = before[s]
				if r.CountAfter, err = sumCounts(ctx, clients[s], b.servers[s].url, cookies[s]); err != nil {
					return out, fmt.Errorf("%s: %w", s, err)
				}
			}
			wr.Servers = append(wr.Servers, r)
		}
		wr.OursPerSCS = wr.Servers[0].ReqPerSec / wr.Servers[1].ReqPerSec
		wr.OursPerFlor = wr.Servers[0].ReqPerSec / wr.Servers[2].ReqPerSec
		wr.RoundsPerSCS, wr.RoundsPerFloor = spreadOf(perSCS), spreadOf(perFloor)
		out = append(out, wr)
	}
	return out, nil
}

// asClient runs fn, with the pprof label client=name when label is set.
func asClient(label bool, ctx context.Context, name string, fn func(context.Context)) {
	if label {
		pprof.Do(ctx, pprof.Labels("client", name), fn)
	} else {
		fn(ctx)
	}
}

// roundOrder is the order the servers run in round r: rotated by one each
// round, so over len(serverNames) rounds every server runs once in every
// position. A fixed order measured up to 10% apart on PostgreSQL read
// (sqlsessions first: 83 µs of CPU per request here, after scs: 73 µs),
// whatever the previous round left behind (garbage to collect, dirty
// caches) falling on the same server every time.
func roundOrder(r int) []string {
	n := len(serverNames)
	order := make([]string, n)
	for i := range n {
		order[i] = serverNames[(i+r)%n]
	}
	return order
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// setCosts fills r's per-request costs from s: allocations and GC always,
// CPU times and system calls where /proc could be read.
func (r *ServerResult) setCosts(s sample) {
	if s.requests == 0 {
		return
	}
	n := float64(s.requests)
	r.AllocsPerRequest = float64(s.cpu.allocs) / n
	r.AllocBytesPerRequest = float64(s.cpu.allocBytes) / n
	r.GCMicros = micros(s.cpu.gc) / n
	if s.cpu.ok {
		r.AppCPUMicros = micros(s.cpu.self) / n
		r.DBCPUMicros = micros(s.cpu.db) / n
		r.ReadCallsPerRequest = float64(s.cpu.reads) / n
		r.WriteCallsPerRequest = float64(s.cpu.writes) / n
	}
}

// cpuNote is the costs part of a round's progress line.
func cpuNote(s sample) string {
	if s.requests == 0 {
		return ""
	}
	var r ServerResult
	r.setCosts(s)
	note := fmt.Sprintf(", %.0f allocs (%.0f B, %.0f µs of GC) per request", r.AllocsPerRequest, r.AllocBytesPerRequest, r.GCMicros)
	if s.cpu.ok {
		note += fmt.Sprintf(", CPU per request: %.0f µs here, %.0f µs database; %.2f reads and %.2f writes (system calls) per request",
			r.AppCPUMicros, r.DBCPUMicros, r.ReadCallsPerRequest, r.WriteCallsPerRequest)
	}
	return note
}

// printReport writes the report as text tables.
func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "%d sessions per server, %d connections, %d rounds x %s, pool %d (SQLite %d)\n",
		rep.Sessions, rep.Concurrency, rep.Rounds, rep.Duration, rep.Pool, rep.SQLitePool)
	if rep.FloorRow {
		fmt.Fprintln(w, "the floor's SELECT returns a session-shaped row (--floor-row)")
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s / %s\n", r.Backend, r.Workload)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "server\treq/s\tp50 ms\tp99 ms\terrors\tCPU µs/req here\tof it GC\tdb\tallocs/req\tB/req\t")
		for _, s := range r.Servers {
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", s.Server, s.ReqPerSec, s.P50Ms, s.P99Ms, s.Errors,
				s.AppCPUMicros, s.GCMicros, s.DBCPUMicros, s.AllocsPerRequest, s.AllocBytesPerRequest)
		}
		tw.Flush()
		fmt.Fprintf(w, "sqlsessions/scs %.2fx   sqlsessions/floor %.2fx\n", r.OursPerSCS, r.OursPerFlor)
		if rep.Rounds > 1 {
			fmt.Fprintf(w, "per round: sqlsessions/scs median %.2fx (%.2f-%.2f)   sqlsessions/floor median %.2fx (%.2f-%.2f)\n",
				r.RoundsPerSCS.Median, r.RoundsPerSCS.Min, r.RoundsPerSCS.Max,
				r.RoundsPerFloor.Median, r.RoundsPerFloor.Min, r.RoundsPerFloor.Max)
		}
		for _, s := range r.Servers {
			if s.StatementsPerRequest > 0 {
				fmt.Fprintf(w, "%s: %.3f store statements per request\n", s.Server, s.StatementsPerRequest)
			}
			if s.CountAfter > 0 {
				fmt.Fprintf(w, "%s: counters +%d for %d increments (%.1f%% lost to concurrent requests on one session)\n",
					s.Server, s.CountAfter-s.CountBefore, s.Requests-s.Errors,
					100*(1-float64(s.CountAfter-s.CountBefore)/float64(s.Requests-s.Errors)))
			}
		}
		for _, s := range r.Servers {
			if s.FirstErr != "" {
				fmt.Fprintf(w, "%s first error: %s\n", s.Server, s.FirstErr)
			}
		}
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"time"
)

// serveCommand is the hidden subcommand a child process runs: one server,
// until its standard input closes.
const serveCommand = "serve"

// readyPrefix starts the one line a child writes on its standard output,
// followed by its address, once it accepts requests.
const readyPrefix = "sessionbench-listening "

// statsPath answers the child's own counters (processStats as JSON), for the
// parent to read before and after a round. Every server answers it, outside
// its session handling.
const statsPath = "/_sessionbench/stats"

// countPath answers as pathRead does, but from the database: the parent
// sums the counters through it (with --cache, a cached counter may be older
// than another instance's last increment).
const countPath = "/_sessionbench/count"

// poolURLEnv carries serverConfig.poolURL to a child.
const poolURLEnv = "SESSIONBENCH_POOL_URL"

// processStats is what a server process counts of itself that /proc does
// not show.
type processStats struct {
	Allocs     uint64  `json:"allocs"`
	AllocBytes uint64  `json:"alloc_bytes"`
	GCSeconds  float64 `json:"gc_seconds"` // the Go runtime's estimate of its collector's CPU
	Statements int64   `json:"statements"` // sqlsessions' store statements, when counted
}

// plus sums the stats of two processes.
func (s processStats) plus(o processStats) processStats {
	return processStats{
		Allocs: s.Allocs + o.Allocs, AllocBytes: s.AllocBytes + o.AllocBytes,
		GCSeconds: s.GCSeconds + o.GCSeconds, Statements: s.Statements + o.Statements,
	}
}

func readProcessStats(c *statementCounter) processStats {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(samples)
	s := processStats{Allocs: samples[0].Value.Uint64(), AllocBytes: samples[1].Value.Uint64()}
	if samples[2].Value.Kind() == metrics.KindFloat64 {
		s.GCSeconds = samples[2].Value.Float64()
	}
	if c != nil {
		s.Statements = c.n.Load()
	}
	return s
}

// serveArgs is the command line that makes a child serve cfg.
func serveArgs(cfg serverConfig, cpuProfile string) []string {
	args := []string{serveCommand,
		"--backend", cfg.backend, "--server", cfg.server, "--schema", cfg.schema,
		"--pool", strconv.Itoa(cfg.pool), "--inactivity", cfg.inactivity.String(),
	}
	if cfg.floorRow {
		args = append(args, "--floor-row")
	}
	if cfg.countStatements {
		args = append(args, "--count-statements")
	}
	if cfg.cache {
		args = append(args, "--cache")
	}
	if cfg.pgnotify {
		args = append(args, "--pgnotify")
	}
	if cfg.pgnDeletes {
		args = append(args, "--pgnotify-deletes")
	}
	if cfg.pgbouncer {
		args = append(args, "--pgbouncer")
	}
	if cpuProfile != "" {
		args = append(args, "--cpuprofile", cpuProfile)
	}
	return args
}

// serveMain runs the serve subcommand on args (those after "serve") and
// returns the exit code. It serves one server on a loopback port, writes
// readyPrefix and the address on stdout, and shuts down when stdin reaches
// its end (the parent closed it, or died).
func serveMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg serverConfig
	var cpuProfile string
	fs := serveFlags(&cfg, &cpuProfile)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionbench serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.poolURL = os.Getenv(poolURLEnv)
	// Ctrl-C reaches the whole process group: the parent stops its
	// children by closing their standard input, which also happens when it
	// dies.
	signal.Ignore(os.Interrupt)
	if err := serve(cfg, cpuProfile, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "sessionbench serve %s/%s: %v\n", cfg.backend, cfg.server, err)
		return 1
	}
	return 0
}

// serveFlags is serve's flag set, which fills cfg and cpuProfile.
func serveFlags(cfg *serverConfig, cpuProfile *string) *flag.FlagSet {
	fs := flag.NewFlagSet("sessionbench serve", flag.ContinueOnError)
	fs.StringVar(&cfg.backend, "backend", "", "postgres, mysql or sqlite")
	fs.StringVar(&cfg.server, "server", "", "sqlsessions, scs or floor")
	fs.StringVar(&cfg.schema, "schema", "", "the PostgreSQL schema, MariaDB database or SQLite file of the tables")
	fs.IntVar(&cfg.pool, "pool", 10, "pool size")
	fs.DurationVar(&cfg.inactivity, "inactivity", 0, "session expiry on inactivity (0: each server's default)")
	fs.BoolVar(&cfg.floorRow, "floor-row", false, "the floor's SELECT returns a session's row")
	fs.BoolVar(&cfg.countStatements, "count-statements", false, "count sqlsessions' store statements")
	fs.BoolVar(&cfg.cache, "cache", false, "sqlsessions behind core.CachingStore")
	fs.BoolVar(&cfg.pgnotify, "pgnotify", false, "the cache gets pgnotify's invalidation feed (the triggers must be installed)")
	fs.BoolVar(&cfg.pgnDeletes, "pgnotify-deletes", false, "with --pgnotify: its feed of deletions only")
	fs.BoolVar(&cfg.pgbouncer, "pgbouncer", false, "the pool goes through PgBouncer in transaction mode: the floor runs its statements unprepared, and requests are not cancelled when their client goes")
	fs.StringVar(cpuProfile, "cpuprofile", "", "write a CPU profile of this process's life to this file")
	return fs
}

func serve(cfg serverConfig, cpuProfile string, stdin io.Reader, stdout io.Writer) (err error) {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := newServer(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.close()) }()

	// One comparison per request, the same for every server (a ServeMux
	// would also clean paths).
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case statsPath:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(readProcessStats(s.statements))
			return
		case countPath:
			r.URL.Path = pathRead
			s.counts.ServeHTTP(w, r)
			return
		}
		if cfg.pgbouncer {
			r = r.WithContext(context.WithoutCancel(r.Context()))
		}
		s.handler.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(stdout, "%s%s\n", readyPrefix, ln.Addr()); err != nil {
		srv.Close()
		return err
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
		close(stop)
	}()
	select {
	case <-stop:
	case err := <-served:
		return err
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return srv.Shutdown(sctx)
}

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/internal/pgbouncer"
)

// requirePgBouncer skips the test (fails it under CI) without a pgbouncer
// binary.
func requirePgBouncer(tb testing.TB) {
	tb.Helper()
	if _, err := pgbouncer.Bin(); err != nil {
		skipOrFail(tb, "%v", err)
	}
}

// runInstances runs sessionbench briefly with args (two instances, the
// counter and read workloads unless args say otherwise, sqlsessions and
// the floor) and checks what
// every multi-instance run must give: no errors, both servers measured,
// every seeded session's counter up by the counted increments (sqlsessions
// loses none, cache or not: a save on a stale cached record is replayed),
// the ratio with scs left out of the report, and the configuration stated.
func runInstances(t *testing.T, backend string, args ...string) *Report {
	t.Helper()
	if testing.Short() {
		t.Skip("starts two server processes per round and runs wrk; skipped with -short (.ci/run runs it)")
	}
	requireWrk(t)
	args = append([]string{"--preset", "seed", "--backends", backend, "--servers", "sqlsessions,floor",
		"--workloads", "counter,read", "--instances", "2", "--duration", "1s", "--warmup", "0s",
		"--rounds", "1", "--sessions", "20", "--concurrency", "4", "--threads", "2"}, args...)
	cfg := testConfig(t, backend, args...)
	rep := runReport(t, cfg)
	if rep.Errors != 0 || len(rep.Results) != len(cfg.workloads) || rep.Instances != 2 {
		t.Fatalf("%d errors, %d results, %d instances; want 0, %d, 2", rep.Errors, len(rep.Results), rep.Instances, len(cfg.workloads))
	}
	for _, r := range rep.Results {
		if len(r.Servers) != 2 || r.Servers[0].Server != serverOurs || r.Servers[1].Server != serverFloor {
			t.Fatalf("%s: servers %+v, want sqlsessions and floor", r.Workload, r.Servers)
		}
		if r.OursPerFloor <= 0 || r.OursPerSCS != 0 || r.RoundsPerSCS != (Spread{}) || r.CPUOursPerSCS != 0 {
			t.Errorf("%s: ratios %+v: want sqlsessions/floor only", r.Workload, r)
		}
		for _, s := range r.Servers {
			if s.Errors != 0 || s.Requests == 0 || s.ReqPerSec <= 0 || s.ServerCPUMicros <= 0 || s.AllocsPerRequest <= 0 {
				t.Errorf("%s/%s: %+v", r.Workload, s.Server, s)
			}
			if r.Workload != workloadCounter {
				continue
			}
			// Seeded once per round, through the first instance. wrk
			// does not count the requests in flight when it stops: up
			// to one per connection.
			gain := s.CountAfter - s.CountBefore
			if s.CountBefore != cfg.sessions || gain <= 0 || gain > s.Increments+cfg.concurrency {
				t.Errorf("%s: counters %d -> %d after %d increments", s.Server, s.CountBefore, s.CountAfter, s.Increments)
			}
			if s.Server == serverOurs && gain < s.Increments {
				t.Errorf("sqlsessions lost increments across instances: counters +%d for %d increments", gain, s.Increments)
			}
		}
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(j, []byte("per_scs")) {
		t.Errorf("the JSON report has a ratio to scs, which did not run: %s", j)
	}
	var out strings.Builder
	printReport(&out, rep)
	if strings.Contains(out.String(), "sqlsessions/scs") || !strings.Contains(out.String(), "sqlsessions/floor") {
		t.Errorf("report: want the ratio to the floor only:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "instances 2") {
		t.Errorf("report does not state the instances:\n%s", out.String())
	}
	return rep
}

// TestRunInstancesCache runs two instances of each server on one SQLite
// file, sqlsessions behind CachingStore, on the counter workload (the one
// a cache could get wrong across instances; reads through the cache run
// in TestRunPgBouncerPGNotify).
func TestRunInstancesCache(t *testing.T) {
	rep := runInstances(t, "sqlite", "--cache", "--workloads", "counter")
	if !rep.Cache || rep.PGNotify || rep.PgBouncer {
		t.Errorf("configuration: cache %v, pgnotify %v, pgbouncer %v; want cache only", rep.Cache, rep.PGNotify, rep.PgBouncer)
	}
}

// TestRunPgBouncerPGNotify runs two instances of each server on PostgreSQL
// through a PgBouncer in transaction mode (the floor unprepared), the cache
// fed by pgnotify.
func TestRunPgBouncerPGNotify(t *testing.T) {
	requirePgBouncer(t)
	rep := runInstances(t, "postgres", "--pgbouncer", "--pgnotify")
	if !rep.Cache || !rep.PGNotify || !rep.PgBouncer || rep.PgBouncerPoolSize != 2*rep.Pool {
		t.Errorf("configuration: %+v", rep)
	}
	for _, r := range rep.Results {
		for _, s := range r.Servers {
			// sqlsessions' cache serves nearly every read: PgBouncer may
			// use less than /proc's 10 ms tick then.
			if (r.Workload == workloadCounter || s.Server == serverFloor) && s.PgBouncerCPUMicros <= 0 {
				t.Errorf("%s/%s: PgBouncer's CPU not measured", r.Workload, s.Server)
			}
		}
	}
	var out strings.Builder
	printReport(&out, rep)
	for _, want := range []string{"pgnotify on", "pgbouncer on", "default_pool_size 20", "pgbouncer CPU"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRunPGNotifyDeletes runs two instances on PostgreSQL with pgnotify's
// feed of deletions only: the parent installs no UPDATE trigger, and the
// counters lose nothing (runInstances checks them).
func TestRunPGNotifyDeletes(t *testing.T) {
	rep := runInstances(t, "postgres", "--pgnotify-deletes", "--workloads", "counter")
	if !rep.Cache || !rep.PGNotify || !rep.PGNotifyDeletes || rep.PgBouncer {
		t.Errorf("configuration: %+v", rep)
	}
	var out strings.Builder
	printReport(&out, rep)
	if !strings.Contains(out.String(), "pgnotify on (deletions only)") {
		t.Errorf("report lacks the feed's kind:\n%s", out.String())
	}
}

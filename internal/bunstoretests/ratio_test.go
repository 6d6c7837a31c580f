//go:build unix

package bunstoretests

import (
	"context"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun/dialect"
)

// TestFloorRatio measures the store against the raw database/sql floor with
// rounds that alternate between the two (so background load on a shared
// machine hits both alike) and logs the median throughput ratio per
// operation and dialect ("Load/1": the store's Load against a SELECT of
// one integer of the same row). It is a measurement, not a pass/fail timing test:
// it runs only with SQLSESSIONS_BENCH_RATIO=1 and fails only if an operation
// fails.
//
//	SQLSESSIONS_BENCH_RATIO=1 go test -run TestFloorRatio -v ./internal/bunstoretests
func TestFloorRatio(t *testing.T) {
	if os.Getenv("SQLSESSIONS_BENCH_RATIO") == "" {
		t.Skip("set SQLSESSIONS_BENCH_RATIO=1 to measure store/raw throughput ratios")
	}
	const (
		rounds  = 9
		round   = 400 * time.Millisecond
		workers = 16
	)
	for _, d := range benchDialects() {
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			f := newFixture(t, db, d.opts...)
			s, raw, data, blob, exp, ids := f.s, f.raw, f.data, f.blob, f.exp, f.ids
			ctx := context.Background()
			sqlite := db.Dialect().Name() == dialect.SQLite

			// run calls op from workers goroutines for one round and
			// returns operations per second; it adds the process CPU time
			// used (driver included) and the operations to *cpu and *cnt.
			var cpu time.Duration
			var cnt int64
			run := func(newWorker func() func() error) float64 {
				cpu0 := cpuTime()
				var ops atomic.Int64
				var wg sync.WaitGroup
				deadline := time.Now().Add(round)
				for range workers {
					op := newWorker()
					wg.Go(func() {
						for time.Now().Before(deadline) {
							if err := op(); err != nil {
								t.Error(err)
								return
							}
							ops.Add(1)
						}
					})
				}
				wg.Wait()
				cpu += cpuTime() - cpu0
				cnt += ops.Load()
				return float64(ops.Load()) / round.Seconds()
			}
			var n atomic.Int64
			next := func() core.ID { return ids[n.Add(1)%int64(len(ids))] }
			type pair struct {
				name       string
				store, raw func() func() error
			}
			pairs := []pair{
				{"Load",
					func() func() error {
						return func() error {
							rec, err := s.Load(ctx, next(), time.Now())
							if err == nil && rec == nil {
								t.Fatal("not found")
							}
							return err
						}
					},
					func() func() error {
						var (
							b       []byte
							et      time.Time
							ei, ver int64
						)
						dst := any(&et)
						if sqlite {
							dst = &ei
						}
						return func() error {
							return raw.load.QueryRowContext(ctx, string(next()), raw.expiry(time.Now().UTC())).Scan(&b, dst, &ver)
						}
					}},
				// The store's Load against reading one integer of the
				// same row: what the row's shape costs beyond a counter.
				{"Load/1",
					func() func() error {
						return func() error {
							_, err := s.Load(ctx, next(), time.Now())
							return err
						}
					},
					func() func() error {
						var ver int64
						return func() error {
							return raw.loadOne.QueryRowContext(ctx, string(next()), raw.expiry(time.Now().UTC())).Scan(&ver)
						}
					}},
				{"Save",
					func() func() error {
						rec := &core.Record{ID: core.ID(benchID()), Data: data, Expiry: exp}
						if err := s.Create(ctx, rec); err != nil {
							t.Fatal(err)
						}
						return func() error {
							rec.Expiry = time.Now().UTC().Add(time.Hour)
							return s.Save(ctx, rec)
						}
					},
					func() func() error {
						id := benchID()
						if _, err := raw.create.ExecContext(ctx, id, blob, raw.expiry(exp)); err != nil {
							t.Fatal(err)
						}
						version := int64(1)
						return func() error {
							_, err := raw.save.ExecContext(ctx, blob, raw.expiry(time.Now().UTC().Add(time.Hour)), id, version)
							version++
							return err
						}
					}},
				{"Create",
					func() func() error {
						return func() error {
							return s.Create(ctx, &core.Record{ID: core.ID(benchID()), Data: data, Expiry: exp})
						}
					},
					func() func() error {
						return func() error {
							_, err := raw.create.ExecContext(ctx, benchID(), blob, raw.expiry(exp))
							return err
						}
					}},
			}
			for _, p := range pairs {
				run(p.store) // warm up both
				run(p.raw)
				var ratios, sOps, rOps []float64
				var sCPU, rCPU time.Duration
				var sCnt, rCnt int64
				for i := range rounds {
					var so, ro float64
					for k := range 2 {
						cpu, cnt = 0, 0
						if (i+k)%2 == 0 {
							so = run(p.store)
							sCPU += cpu
							sCnt += cnt
						} else {
							ro = run(p.raw)
							rCPU += cpu
							rCnt += cnt
						}
					}
					ratios = append(ratios, so/ro)
					sOps = append(sOps, so)
					rOps = append(rOps, ro)
				}
				slices.Sort(ratios)
				slices.Sort(sOps)
				slices.Sort(rOps)
				t.Logf("%-6s store %8.0f ops/s, raw %8.0f ops/s (medians), median ratio store/raw %.3f (range %.3f-%.3f); client CPU per op: store %v, raw %v",
					p.name, sOps[rounds/2], rOps[rounds/2], ratios[rounds/2], ratios[0], ratios[rounds-1],
					(sCPU / time.Duration(max(sCnt, 1))).Round(100*time.Nanosecond), (rCPU / time.Duration(max(rCnt, 1))).Round(100*time.Nanosecond))
			}
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

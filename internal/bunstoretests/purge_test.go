package bunstoretests

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
	"github.com/uptrace/bun"
)

func countRows(t testing.TB, db *bun.DB, s *bunstore.Store) int {
	t.Helper()
	n, err := db.NewSelect().Table(string(table(s))).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestContinuouslyDeleteExpired: the loop waits a period before its first
// round, survives failing rounds (here: the table does not exist yet) and
// logs them, purges once the table works, and returns when ctx ends.
func TestContinuouslyDeleteExpired(t *testing.T) {
	db := dbtest.OpenSQLite(t)
	var logs syncbuf.Buffer
	s, err := bunstore.New(db, bunstore.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), bunstore.WithDeleteBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	const period = 200 * time.Millisecond
	go func() { done <- s.ContinuouslyDeleteExpired(ctx, period) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "failed") {
		if time.Now().After(deadline) {
			t.Fatal("no failed round was logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "no such table") {
		t.Errorf("the log does not say why the round failed: %s", logs.String())
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	fill(t, db, s, 35, now().Add(-time.Minute))
	live := newRecord(t, s, now().Add(time.Hour), "k", "v")
	if err := s.Create(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	for countRows(t, db, s) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("expired rows not purged after the table appeared: %d left", countRows(t, db, s))
		}
		select {
		case err := <-done:
			t.Fatalf("the loop returned early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not stop when its context ended")
	}
}

func TestContinuouslyDeleteExpiredSkipsFirstTick(t *testing.T) {
	db := dbtest.OpenSQLite(t)
	s := dbtest.NewStore(t, db)
	fill(t, db, s, 5, now().Add(-time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ContinuouslyDeleteExpired(ctx, time.Second) }()
	time.Sleep(300 * time.Millisecond)
	n := countRows(t, db, s)
	cancel()
	<-done
	if n != 5 {
		t.Fatalf("%d rows left 300ms into a 1s period, want 5: the first round ran at once", n)
	}
}

// purgeRows is the size of the purge-under-load test: 20,000 by default,
// SQLSESSIONS_PURGE_ROWS (e.g. 1000000) for the full-size run.
func purgeRows(t *testing.T) int {
	if v := os.Getenv("SQLSESSIONS_PURGE_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SQLSESSIONS_PURGE_ROWS=%q", v)
		}
		return n
	}
	return 20000
}

// TestPurgeUnderLoad deletes many expired rows in batches while other
// goroutines keep loading live sessions: every load succeeds, and the test
// logs p99 load latency idle and during the purge.
func TestPurgeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("purges a large table under load; skipped with -short (.ci/run runs it)")
	}
	rows := purgeRows(t)
	for _, d := range dbtest.Dialects() {
		if d.Name == "postgres-libpq" {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			s := dbtest.NewStore(t, db)
			ctx := context.Background()
			start := time.Now()
			fill(t, db, s, rows, now().Add(-time.Hour))
			t.Logf("inserted %d expired rows in %v", rows, time.Since(start).Round(time.Millisecond))
			live := make([]core.ID, 50)
			for i := range live {
				rec := newRecord(t, s, now().Add(time.Hour), "i", i)
				if err := s.Create(ctx, rec); err != nil {
					t.Fatal(err)
				}
				live[i] = rec.ID
			}
			load := func(stop <-chan struct{}) ([]time.Duration, error) {
				var mu sync.Mutex
				var lat []time.Duration
				var firstErr atomic.Value
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Go(func() {
						var mine []time.Duration
						for i := g; ; i++ {
							select {
							case <-stop:
								mu.Lock()
								lat = append(lat, mine...)
								mu.Unlock()
								return
							default:
							}
							t0 := time.Now()
							rec, err := s.Load(ctx, live[i%len(live)], now())
							mine = append(mine, time.Since(t0))
							if err == nil && rec == nil {
								err = errors.New("live record not found")
							}
							if err != nil {
								firstErr.CompareAndSwap(nil, err)
							}
						}
					})
				}
				wg.Wait()
				err, _ := firstErr.Load().(error)
				return lat, err
			}
			// Idle baseline.
			stop := make(chan struct{})
			time.AfterFunc(300*time.Millisecond, func() { close(stop) })
			idle, err := load(stop)
			if err != nil {
				t.Fatal(err)
			}
			// During the purge.
			stop = make(chan struct{})
			type result struct {
				n   int64
				err error
				d   time.Duration
			}
			purged := make(chan result, 1)
			go func() {
				t0 := time.Now()
				n, err := s.DeleteExpired(ctx, now(), 0)
				purged <- result{n, err, time.Since(t0)}
				close(stop)
			}()
			busy, err := load(stop)
			r := <-purged
			if err != nil {
				t.Fatalf("load during purge: %v", err)
			}
			if r.err != nil || r.n != int64(rows) {
				t.Fatalf("DeleteExpired = %d, %v; want %d", r.n, r.err, rows)
			}
			if n := countRows(t, db, s); n != len(live) {
				t.Fatalf("%d rows left, want %d", n, len(live))
			}
			t.Logf("purged %d rows in %v (%d batches); loads: idle n=%d p50=%v p99=%v, during purge n=%d p50=%v p99=%v",
				r.n, r.d.Round(time.Millisecond), (rows+bunstore.DefaultDeleteBatchSize-1)/bunstore.DefaultDeleteBatchSize,
				len(idle), pct(idle, 50), pct(idle, 99), len(busy), pct(busy, 50), pct(busy, 99))
		})
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[(len(d)-1)*p/100].Round(time.Microsecond)
}

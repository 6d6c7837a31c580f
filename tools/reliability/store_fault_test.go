package reliability

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// deadline is the context deadline every store call gets while the database
// is stalled; slack is how late past it a call may return (generous: -race
// and a 2-core machine).
const (
	deadline = 200 * time.Millisecond
	slack    = 800 * time.Millisecond
)

// storeOp is one store call on a record that exists.
type storeOp struct {
	name string
	run  func(ctx context.Context, s core.Store, existing *core.Record) error
}

func newRecord(t testing.TB, s core.Store, data map[string]any) *core.Record {
	t.Helper()
	tok, err := core.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &core.Record{ID: tok.ID(), Data: map[string][]byte{}, Expiry: time.Now().UTC().Add(time.Hour)}
	for k, v := range data {
		b, err := s.Codec().Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rec.Data[k] = b
	}
	return rec
}

func storeOps(t testing.TB) []storeOp {
	return []storeOp{
		{"Load", func(ctx context.Context, s core.Store, r *core.Record) error {
			_, err := s.Load(ctx, r.ID, time.Now())
			return err
		}},
		{"Save", func(ctx context.Context, s core.Store, r *core.Record) error {
			c := r.Clone()
			return s.Save(ctx, c)
		}},
		{"Create", func(ctx context.Context, s core.Store, r *core.Record) error {
			return s.Create(ctx, newRecord(t, s, map[string]any{"n": 1}))
		}},
		{"Delete", func(ctx context.Context, s core.Store, r *core.Record) error {
			return s.Delete(ctx, newRecord(t, s, nil).ID)
		}},
		{"DeleteExpired", func(ctx context.Context, s core.Store, r *core.Record) error {
			_, err := s.DeleteExpired(ctx, time.Now(), 0)
			return err
		}},
	}
}

// seed creates n records holding their own index and returns them.
func seed(t testing.TB, s core.Store, n int) []*core.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs := make([]*core.Record, n)
	for i := range recs {
		recs[i] = newRecord(t, s, map[string]any{"i": i, "name": fmt.Sprintf("client-%d", i)})
		if err := s.Create(ctx, recs[i]); err != nil {
			t.Fatalf("seeding: %v", err)
		}
	}
	return recs
}

// checkSeeded asserts every seeded record is still there with its data.
func checkSeeded(t testing.TB, s core.Store, recs []*core.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, want := range recs {
		got, err := s.Load(ctx, want.ID, time.Now())
		if err != nil || got == nil {
			t.Fatalf("record %d after the fault: %v, %v", i, got, err)
		}
		var n int
		if err := s.Codec().Unmarshal(got.Data["i"], &n); err != nil || n != i {
			t.Fatalf("record %d after the fault holds i=%d (%v)", i, n, err)
		}
	}
}

// awaitRecovery retries a Load until it succeeds, for at most limit, and
// returns how long it took and how many attempts failed.
func awaitRecovery(t testing.TB, s core.Store, id core.ID, limit time.Duration) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	failed := 0
	for time.Since(start) < limit {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.Load(ctx, id, time.Now())
		cancel()
		if err == nil {
			return time.Since(start), failed
		}
		failed++
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the store did not recover within %v of the database returning (%d failed attempts)", limit, failed)
	return 0, 0
}

// TestStoreDeadlinesWhenStalled: with the database stalled (connections open,
// nothing forwarded), every store call with a 200 ms deadline returns an
// error wrapping context.DeadlineExceeded in time, and a cancelled context
// gives context.Canceled; once the database answers again, the store works
// and the data is intact.
func TestStoreDeadlinesWhenStalled(t *testing.T) {
	for _, name := range serverBackends {
		t.Run(name, func(t *testing.T) {
			fb := openFault(t, name)
			recs := seed(t, fb.store, 20)
			ops := storeOps(t)

			// Warm the pool so that stalled calls meet open connections, then
			// stall; calls needing a new connection meet a stalled handshake.
			fb.proxy.Stall()
			for _, op := range ops {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				err := op.run(ctx, fb.store, recs[0])
				took := time.Since(start)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s on a stalled database: err = %v, want one wrapping context.DeadlineExceeded", op.name, err)
				}
				if took > deadline+slack {
					t.Errorf("%s on a stalled database returned after %v; deadline %v", op.name, took, deadline)
				}
			}
			for _, op := range ops {
				ctx, cancel := context.WithCancel(context.Background())
				timer := time.AfterFunc(deadline, cancel)
				start := time.Now()
				err := op.run(ctx, fb.store, recs[0])
				took := time.Since(start)
				timer.Stop()
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s cancelled on a stalled database: err = %v, want one wrapping context.Canceled", op.name, err)
				}
				if took > deadline+slack {
					t.Errorf("%s cancelled on a stalled database returned after %v; cancelled at %v", op.name, took, deadline)
				}
			}
			fb.proxy.Restore()
			took, failed := awaitRecovery(t, fb.store, recs[0].ID, 5*time.Second)
			t.Logf("%s: recovered %v after the stall ended (%d failed attempts)", name, took, failed)
			checkSeeded(t, fb.store, recs)
		})
	}
}

// TestStoreCut: with every connection cut and new ones refused, store calls
// fail fast (well before their deadline) with an error, never a panic or a
// hang; within 5 s of the database returning they succeed and every record
// committed before the cut is intact.
func TestStoreCut(t *testing.T) {
	for _, name := range serverBackends {
		t.Run(name, func(t *testing.T) {
			fb := openFault(t, name)
			recs := seed(t, fb.store, 20)
			ops := storeOps(t)
			// Fill the pool with idle connections that the cut will kill.
			warm(t, fb)
			fb.proxy.Cut()
			for _, op := range ops {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				err := op.run(ctx, fb.store, recs[0])
				took := time.Since(start)
				cancel()
				if err == nil {
					t.Errorf("%s succeeded on a cut database", op.name)
				}
				if took > 2*time.Second {
					t.Errorf("%s on a cut database took %v (err %v)", op.name, took, err)
				}
			}
			fb.proxy.Restore()
			took, failed := awaitRecovery(t, fb.store, recs[0].ID, 5*time.Second)
			t.Logf("%s: recovered %v after the cut ended (%d failed attempts)", name, took, failed)
			checkSeeded(t, fb.store, recs)

			// A blip: every pooled connection dies while the server stays
			// up. database/sql discards connections the driver reports bad
			// and retries on fresh ones, so how many calls fail?
			warm(t, fb)
			fb.proxy.CloseConns()
			blipFailures := 0
			for i := range 2 * poolSize {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := fb.store.Load(ctx, recs[i%len(recs)].ID, time.Now()); err != nil {
					blipFailures++
				}
				cancel()
			}
			t.Logf("%s: %d of %d loads failed right after all pooled connections were reset", name, blipFailures, 2*poolSize)
			checkSeeded(t, fb.store, recs)
		})
	}
}

// warm opens poolSize connections at once so the pool holds them idle.
func warm(t testing.TB, fb *faultBackend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := make([]interface{ Close() error }, 0, poolSize)
	for range poolSize {
		c, err := fb.db.DB.Conn(ctx)
		if err != nil {
			t.Fatalf("warming the pool: %v", err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatalf("warming the pool: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
}

// TestStoreLatency: with 50 ms added each way, a Load takes at least 100 ms
// and still succeeds; a deadline shorter than the round trip is honoured.
func TestStoreLatency(t *testing.T) {
	fb := openFault(t, "postgres")
	recs := seed(t, fb.store, 1)
	warm(t, fb)
	fb.proxy.SetLatency(50 * time.Millisecond)
	defer fb.proxy.SetLatency(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if rec, err := fb.store.Load(ctx, recs[0].ID, time.Now()); err != nil || rec == nil {
		t.Fatalf("Load with latency: %v, %v", rec, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("Load with 50 ms latency each way took %v", took)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := fb.store.Load(short, recs[0].ID, time.Now()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Load with a deadline shorter than the round trip: %v", err)
	}
	fb.proxy.SetLatency(0)
	checkSeeded(t, fb.store, recs)
}

package core_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// pausingStore stops one chosen backend call at a chosen point, so a test can
// run other calls meanwhile and decide the order in which they finish.
type pausingStore struct {
	core.Store
	mu     sync.Mutex
	point  string        // "save-before", "save-after" or "load-after"; "" pauses nothing
	at     chan struct{} // closed when the call reaches point
	resume chan struct{} // closed by the test to let it go on
}

func (p *pausingStore) pauseNext(point string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.point, p.at, p.resume = point, make(chan struct{}), make(chan struct{})
}

func (p *pausingStore) reach(point string) {
	p.mu.Lock()
	if p.point != point {
		p.mu.Unlock()
		return
	}
	p.point = ""
	at, resume := p.at, p.resume
	p.mu.Unlock()
	close(at)
	<-resume
}

func (p *pausingStore) Save(ctx context.Context, rec *core.Record) error {
	p.reach("save-before")
	err := p.Store.Save(ctx, rec)
	p.reach("save-after")
	return err
}

func (p *pausingStore) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	rec, err := p.Store.Load(ctx, id, now)
	p.reach("load-after")
	return rec, err
}

func record(id core.ID, version uint64, value string) *core.Record {
	return &core.Record{ID: id, Data: map[string][]byte{"v": []byte(value)}, Expiry: time.Now().Add(time.Hour), Version: version}
}

// TestCachingStoreNeverGoesBack races each kind of call that caches its
// result against a newer write or a delete of the same session, finishing
// the older call last; the cache must then serve what the backend holds.
func TestCachingStoreNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	id := core.ID("AAAAAAAAAAAAAAAAAAAAAA")
	for _, tc := range []struct {
		name  string
		point string
		size  int
		// first runs in its own goroutine and is paused at point; meanwhile
		// runs on the same cache; want is the value then loaded (""
		// means deleted).
		first, meanwhile func(t *testing.T, c *core.CachingStore)
		want             string
	}{{
		name: "OlderSaveFinishesLast", point: "save-after", size: 8,
		first:     func(t *testing.T, c *core.CachingStore) { mustSave(t, c, record(id, 1, "older")) },
		meanwhile: func(t *testing.T, c *core.CachingStore) { mustSave(t, c, record(id, 2, "newer")) },
		want:      "newer",
	}, {
		name: "LoadFinishesAfterSave", point: "load-after", size: 8,
		first:     func(t *testing.T, c *core.CachingStore) { _, _ = c.Load(ctx, id, time.Now()) },
		meanwhile: func(t *testing.T, c *core.CachingStore) { mustSave(t, c, record(id, 1, "newer")) },
		want:      "newer",
	}, {
		name: "LoadFinishesAfterDelete", point: "load-after", size: 8,
		first:     func(t *testing.T, c *core.CachingStore) { _, _ = c.Load(ctx, id, time.Now()) },
		meanwhile: func(t *testing.T, c *core.CachingStore) { mustDelete(t, c, id) },
	}, {
		name: "SaveFinishesAfterDelete", point: "save-after", size: 8,
		first:     func(t *testing.T, c *core.CachingStore) { mustSave(t, c, record(id, 1, "deleted")) },
		meanwhile: func(t *testing.T, c *core.CachingStore) { mustDelete(t, c, id) },
	}, {
		// The entry is pushed out while the save waits, and an older
		// version cached again by a load that began after that.
		name: "SaveFinishesAfterPushOutAndReload", point: "save-before", size: 1,
		first: func(t *testing.T, c *core.CachingStore) { mustSave(t, c, record(id, 1, "newer")) },
		meanwhile: func(t *testing.T, c *core.CachingStore) {
			if err := c.Create(ctx, record("BBBBBBBBBBBBBBBBBBBBBB", 0, "other")); err != nil {
				t.Fatal(err)
			}
			if rec, err := c.Load(ctx, id, time.Now()); err != nil || rec == nil || rec.Version != 1 {
				t.Fatalf("Load = %v, %v; want version 1", rec, err)
			}
		},
		want: "newer",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			backend := &pausingStore{Store: core.NewMemoryStore()}
			if err := backend.Create(ctx, record(id, 0, "first")); err != nil {
				t.Fatal(err)
			}
			c := core.NewCachingStore(backend, core.CachingOptions{MaxEntries: tc.size})
			if _, err := c.Load(ctx, id, time.Now()); err != nil { // cached at version 1
				t.Fatal(err)
			}
			if tc.point == "load-after" {
				// The paused load must miss the cache.
				c = core.NewCachingStore(backend, core.CachingOptions{MaxEntries: tc.size})
			}
			backend.pauseNext(tc.point)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.first(t, c)
			}()
			<-backend.at
			tc.meanwhile(t, c)
			close(backend.resume)
			<-done

			want, err := backend.Store.Load(ctx, id, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := value(want); got != tc.want {
				t.Fatalf("the backend holds %q, want %q", got, tc.want)
			}
			for range 2 { // a miss, then a hit
				got, err := c.Load(ctx, id, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if value(got) != tc.want || (got != nil && got.Version != want.Version) {
					t.Fatalf("the cache serves %q at version %d, the backend holds %q at version %d",
						value(got), version(got), tc.want, version(want))
				}
			}
		})
	}
}

func mustSave(t *testing.T, s core.Store, rec *core.Record) {
	t.Helper()
	if err := s.Save(context.Background(), rec); err != nil {
		t.Errorf("Save(version %d): %v", rec.Version, err)
	}
}

func mustDelete(t *testing.T, s core.Store, id core.ID) {
	t.Helper()
	if err := s.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func value(rec *core.Record) string {
	if rec == nil {
		return ""
	}
	return string(rec.Data["v"])
}

func version(rec *core.Record) uint64 {
	if rec == nil {
		return 0
	}
	return rec.Version
}

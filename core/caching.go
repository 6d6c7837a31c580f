package core

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// CachingStore puts a bounded in-memory cache in front of another store, like
// tower-sessions' CachingSessionStore: loads are served from memory when
// possible, writes go through to the backend first. The cache never serves an
// expired record.
//
// With several processes behind one backend, a cached record can be older
// than the backend's; a save built on it meets a version conflict, which
// evicts the entry, and the Session reloads from the backend and replays its
// changes, so no write is lost. Reads may be stale for as long as the entry
// stays cached. Within one process the cache never goes back in time: what a
// backend call returned is cached only if no newer version is cached, and
// not at all if the session's entry was evicted (deleted, outdated or pushed
// out) while the call ran.
type CachingStore struct {
	backend Store
	max     int

	mu      sync.Mutex
	entries map[ID]*list.Element // of *Record
	lru     list.List            // front: most recently used
	// inflight counts, per session, the backend calls whose result may be
	// cached when they return, and the evictions of that session's entry
	// since the first of them started.
	inflight map[ID]inflight
}

type inflight struct {
	calls, evictions uint32
}

// NewCachingStore caches up to maxEntries records (at least 1) in front of
// backend.
func NewCachingStore(backend Store, maxEntries int) *CachingStore {
	return &CachingStore{backend: backend, max: max(maxEntries, 1), entries: map[ID]*list.Element{}, inflight: map[ID]inflight{}}
}

// Codec implements Store: the backend's codec.
func (c *CachingStore) Codec() Codec { return c.backend.Codec() }

// begin registers a backend call about id whose result may be cached; the
// value it returns goes to end.
func (c *CachingStore) begin(id ID) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.beginLocked(id)
}

func (c *CachingStore) beginLocked(id ID) uint32 {
	f := c.inflight[id]
	f.calls++
	c.inflight[id] = f
	return f.evictions
}

// end closes a call begun when id had seen evictions evictions, and caches
// rec (if not nil) unless a newer version is cached already (two saves, or a
// load and a save, of one session can finish in either order) or the entry
// was evicted meanwhile (rec may have been deleted since).
func (c *CachingStore) end(id ID, evictions uint32, rec *Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.inflight[id]
	if f.calls--; f.calls == 0 {
		delete(c.inflight, id)
	} else {
		c.inflight[id] = f
	}
	if rec == nil {
		return
	}
	e, ok := c.entries[id]
	if ok && e.Value.(*Record).Version >= rec.Version {
		return
	}
	if f.evictions != evictions {
		// rec may be deleted by now; what is cached is older than rec.
		if ok {
			c.removeLocked(e)
		}
		return
	}
	if ok {
		e.Value = rec.Clone()
		c.lru.MoveToFront(e)
		return
	}
	c.entries[id] = c.lru.PushFront(rec.Clone())
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *CachingStore) evict(id ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		c.removeLocked(e)
	} else {
		c.evictedLocked(id)
	}
}

// removeLocked drops an entry.
func (c *CachingStore) removeLocked(e *list.Element) {
	id := e.Value.(*Record).ID
	c.lru.Remove(e)
	delete(c.entries, id)
	c.evictedLocked(id)
}

// evictedLocked tells the calls in flight for id not to cache what they
// return: it may be older than what was evicted.
func (c *CachingStore) evictedLocked(id ID) {
	if f, ok := c.inflight[id]; ok {
		f.evictions++
		c.inflight[id] = f
	}
}

// Create implements Store.
func (c *CachingStore) Create(ctx context.Context, rec *Record) error {
	ev := c.begin(rec.ID)
	err := c.backend.Create(ctx, rec)
	var created *Record
	if err == nil {
		created = rec
	}
	c.end(rec.ID, ev, created)
	return err
}

// Save implements Store.
func (c *CachingStore) Save(ctx context.Context, rec *Record) error {
	ev := c.begin(rec.ID)
	err := c.backend.Save(ctx, rec)
	var (
		current *Record // what the backend holds now, if known
		stale   bool    // the entry is outdated or deleted, and current unknown
		ce      *ConflictError
	)
	switch {
	case err == nil && len(rec.Data) > 0:
		current = rec
	case errors.As(err, &ce) && ce.Current != nil && ce.Current.ID == rec.ID:
		// The backend named the winner: cache it (end clones it before the
		// caller, which owns it, replays onto it).
		current = ce.Current
	case err == nil || errors.Is(err, ErrConflict):
		stale = true
	}
	c.end(rec.ID, ev, current)
	if stale {
		c.evict(rec.ID)
	}
	return err
}

// Load implements Store.
func (c *CachingStore) Load(ctx context.Context, id ID, now time.Time) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		rec := e.Value.(*Record)
		if !rec.Expired(now) {
			c.lru.MoveToFront(e)
			rec = rec.Clone()
			c.mu.Unlock()
			return rec, nil
		}
		c.removeLocked(e)
	}
	ev := c.beginLocked(id)
	c.mu.Unlock()
	rec, err := c.backend.Load(ctx, id, now)
	if err != nil {
		rec = nil
	}
	c.end(id, ev, rec)
	return rec, err
}

// Delete implements Store.
func (c *CachingStore) Delete(ctx context.Context, id ID) error {
	// Evict after the backend delete too, so that a load or save that read
	// the record before it does not leave it cached.
	c.evict(id)
	err := c.backend.Delete(ctx, id)
	c.evict(id)
	return err
}

// DeleteExpired implements Store. Cached expired entries are dropped when
// next looked up.
func (c *CachingStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	return c.backend.DeleteExpired(ctx, now, limit)
}

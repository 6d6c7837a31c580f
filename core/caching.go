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
// stays cached.
type CachingStore struct {
	backend Store
	max     int

	mu      sync.Mutex
	entries map[ID]*list.Element // of *Record
	lru     list.List            // front: most recently used
}

// NewCachingStore caches up to maxEntries records (at least 1) in front of
// backend.
func NewCachingStore(backend Store, maxEntries int) *CachingStore {
	return &CachingStore{backend: backend, max: max(maxEntries, 1), entries: map[ID]*list.Element{}}
}

// Codec implements Store: the backend's codec.
func (c *CachingStore) Codec() Codec { return c.backend.Codec() }

func (c *CachingStore) put(rec *Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[rec.ID]; ok {
		e.Value = rec.Clone()
		c.lru.MoveToFront(e)
		return
	}
	c.entries[rec.ID] = c.lru.PushFront(rec.Clone())
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*Record).ID)
	}
}

func (c *CachingStore) evict(id ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		c.lru.Remove(e)
		delete(c.entries, id)
	}
}

// Create implements Store.
func (c *CachingStore) Create(ctx context.Context, rec *Record) error {
	if err := c.backend.Create(ctx, rec); err != nil {
		return err
	}
	c.put(rec)
	return nil
}

// Save implements Store.
func (c *CachingStore) Save(ctx context.Context, rec *Record) error {
	err := c.backend.Save(ctx, rec)
	switch {
	case err == nil && len(rec.Data) > 0:
		c.put(rec)
	case err == nil || errors.Is(err, ErrConflict):
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
		c.lru.Remove(e)
		delete(c.entries, id)
	}
	c.mu.Unlock()
	rec, err := c.backend.Load(ctx, id, now)
	if err != nil || rec == nil {
		return rec, err
	}
	c.put(rec)
	return rec, nil
}

// Delete implements Store.
func (c *CachingStore) Delete(ctx context.Context, id ID) error {
	// Evict after the backend delete too, so a load racing with it does not
	// leave the deleted record cached.
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

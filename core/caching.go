package core

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults of CachingOptions.
const (
	DefaultCacheEntries = 10_000
	DefaultCacheTTL     = time.Second
	DefaultFeedTTL      = time.Minute
)

// ErrNotSupported is returned by a wrapper store (such as CachingStore) for
// an optional operation its backend does not implement.
var ErrNotSupported = errors.New("sqlsessions: the store does not support this operation")

// CachingOptions configure a CachingStore. The zero value works.
type CachingOptions struct {
	// MaxEntries bounds how many records are cached; the least recently
	// used go first. Zero: DefaultCacheEntries.
	MaxEntries int

	// TTL is how long a cached record is served without asking the
	// backend. It bounds how long a change made by another process (a
	// log-out, a revocation, a write) can go unseen here, so keep it short
	// when several processes share the backend. Zero: DefaultCacheTTL (one
	// second).
	TTL time.Duration

	// FeedTTL replaces TTL while an invalidation feed is up (see
	// SetInvalidationFeed), because the feed evicts what other processes
	// change within milliseconds; when the feed goes down, TTL applies
	// again at once. Zero: DefaultFeedTTL (one minute).
	FeedTTL time.Duration

	// Now is the clock entries are aged by; nil means time.Now.
	Now func() time.Time
}

// CachingStore puts a bounded in-memory cache in front of another store, like
// tower-sessions' CachingSessionStore: loads are served from memory when
// possible, writes go through to the backend first. The cache never serves an
// expired record, nor one older than its TTL.
//
// Several processes on one backend: a write, log-out or revocation made
// elsewhere is seen here within the TTL (one second by default), or within
// milliseconds with an invalidation feed such as bunstore's PostgreSQL
// LISTEN/NOTIFY listener. No write is lost meanwhile: a save built on a
// stale entry meets a version conflict, which evicts it, and the Session
// reloads from the backend and replays its changes. Within one process the
// cache never goes back in time: what a backend call returned is cached only
// if no newer version is cached, and not at all if the session's entry was
// evicted (deleted, outdated or pushed out) while the call ran.
type CachingStore struct {
	backend Store
	max     int
	ttl     time.Duration
	feedTTL time.Duration
	clock   func() time.Time

	mu      sync.Mutex
	entries map[ID]*list.Element // of *entry
	lru     list.List            // front: most recently used
	// inflight counts, per session, the backend calls whose result may be
	// cached when they return, and the evictions of that session's entry
	// since the first of them started.
	inflight map[ID]inflight
	// epoch counts evictions of many entries at once (EvictAll,
	// DeleteUserSessions): a call that spans one caches nothing.
	epoch  uint64
	feedUp bool
}

type entry struct {
	rec     *Record
	fetched time.Time // when the backend call that returned rec began
}

type inflight struct {
	calls, evictions uint32
}

// callState is what a backend call remembers from its start.
type callState struct {
	evictions uint32
	epoch     uint64
	start     time.Time
}

// NewCachingStore returns a cache in front of backend.
func NewCachingStore(backend Store, opts CachingOptions) *CachingStore {
	c := &CachingStore{
		backend: backend, max: opts.MaxEntries, ttl: opts.TTL, feedTTL: opts.FeedTTL, clock: opts.Now,
		entries: map[ID]*list.Element{}, inflight: map[ID]inflight{},
	}
	if c.max <= 0 {
		c.max = DefaultCacheEntries
	}
	if c.ttl <= 0 {
		c.ttl = DefaultCacheTTL
	}
	if c.feedTTL <= 0 {
		c.feedTTL = DefaultFeedTTL
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	return c
}

// Codec implements Store: the backend's codec.
func (c *CachingStore) Codec() Codec { return c.backend.Codec() }

// Backend returns the store the cache is in front of.
func (c *CachingStore) Backend() Store { return c.backend }

// Evict drops the cached records of ids, so the next load of each asks the
// backend. An invalidation feed calls it for every session another process
// changed.
func (c *CachingStore) Evict(ids ...ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.evictLocked(id)
	}
}

// EvictAll empties the cache.
func (c *CachingStore) EvictAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evictAllLocked()
}

func (c *CachingStore) evictAllLocked() {
	c.entries = map[ID]*list.Element{}
	c.lru.Init()
	c.epoch++
}

// SetInvalidationFeed tells the cache whether an invalidation feed is
// delivering every change other processes make (up), so that entries may be
// served for FeedTTL instead of TTL. Going up empties the cache: what
// changed while the feed was down was never reported. Going down returns to
// TTL at once.
func (c *CachingStore) SetInvalidationFeed(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if up && !c.feedUp {
		c.evictAllLocked()
	}
	c.feedUp = up
}

// begin registers a backend call about id whose result may be cached; the
// state it returns goes to end.
func (c *CachingStore) begin(id ID) callState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.beginLocked(id)
}

func (c *CachingStore) beginLocked(id ID) callState {
	f := c.inflight[id]
	f.calls++
	c.inflight[id] = f
	return callState{evictions: f.evictions, epoch: c.epoch, start: c.clock()}
}

// end closes a call begun in state st and caches rec (if not nil) unless a
// newer version is cached already (two saves, or a load and a save, of one
// session can finish in either order) or the entry was evicted meanwhile
// (rec may have been deleted since).
func (c *CachingStore) end(id ID, st callState, rec *Record) {
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
	if ok && e.Value.(*entry).rec.Version >= rec.Version {
		return
	}
	if f.evictions != st.evictions || c.epoch != st.epoch {
		// rec may be deleted by now; what is cached is older than rec.
		if ok {
			c.removeLocked(e)
		}
		return
	}
	ent := &entry{rec: rec.Clone(), fetched: st.start}
	if ok {
		e.Value = ent
		c.lru.MoveToFront(e)
		return
	}
	c.entries[id] = c.lru.PushFront(ent)
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *CachingStore) evictLocked(id ID) {
	if e, ok := c.entries[id]; ok {
		c.removeLocked(e)
	} else {
		c.evictedLocked(id)
	}
}

// removeLocked drops an entry.
func (c *CachingStore) removeLocked(e *list.Element) {
	id := e.Value.(*entry).rec.ID
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
	st := c.begin(rec.ID)
	err := c.backend.Create(ctx, rec)
	var created *Record
	if err == nil {
		created = rec
	}
	c.end(rec.ID, st, created)
	return err
}

// Save implements Store. A save built on a version older than the cached
// one cannot succeed (versions only grow): it fails at once with a
// *ConflictError naming the cached record, with no backend call, and the
// Session replays on it.
func (c *CachingStore) Save(ctx context.Context, rec *Record) error {
	c.mu.Lock()
	created, known := time.Time{}, false
	if e, ok := c.entries[rec.ID]; ok {
		cur := e.Value.(*entry).rec
		if cur.Version > rec.Version {
			cur = cur.Clone()
			c.mu.Unlock()
			return &ConflictError{Current: cur}
		}
		created, known = cur.Created, true
	}
	st := c.beginLocked(rec.ID)
	c.mu.Unlock()
	err := c.backend.Save(ctx, rec)
	var (
		current *Record // what the backend holds now, if known
		stale   bool    // the entry is outdated or deleted, and current unknown
		ce      *ConflictError
	)
	switch {
	case err == nil && len(rec.Data) > 0 && known:
		// Save leaves the creation time alone: keep the stored one, not
		// whatever the caller passed.
		current = rec.Clone()
		current.Created = created
	case errors.As(err, &ce) && ce.Current != nil && ce.Current.ID == rec.ID:
		// The backend named the winner: cache it (end clones it before the
		// caller, which owns it, replays onto it).
		current = ce.Current
	case err == nil || errors.Is(err, ErrConflict):
		stale = true
	}
	c.end(rec.ID, st, current)
	if stale {
		c.Evict(rec.ID)
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
		ent := e.Value.(*entry)
		ttl := c.ttl
		if c.feedUp {
			ttl = c.feedTTL
		}
		if !ent.rec.Expired(now) && c.clock().Sub(ent.fetched) < ttl {
			c.lru.MoveToFront(e)
			rec := ent.rec.Clone()
			c.mu.Unlock()
			return rec, nil
		}
		c.removeLocked(e)
	}
	st := c.beginLocked(id)
	c.mu.Unlock()
	rec, err := c.backend.Load(ctx, id, now)
	if err != nil {
		rec = nil
	}
	c.end(id, st, rec)
	return rec, err
}

// Delete implements Store.
func (c *CachingStore) Delete(ctx context.Context, id ID) error {
	// Evict after the backend delete too, so that a load or save that read
	// the record before it does not leave it cached.
	c.Evict(id)
	err := c.backend.Delete(ctx, id)
	c.Evict(id)
	return err
}

// Take implements Store.
func (c *CachingStore) Take(ctx context.Context, id ID, now time.Time) (*Record, error) {
	c.Evict(id)
	rec, err := c.backend.Take(ctx, id, now)
	c.Evict(id)
	return rec, err
}

// DeleteExpired implements Store. Cached expired entries are dropped when
// next looked up.
func (c *CachingStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	return c.backend.DeleteExpired(ctx, now, limit)
}

// UserSessions implements UserStore when the backend does; otherwise it
// returns ErrNotSupported.
func (c *CachingStore) UserSessions(ctx context.Context, user string, now time.Time) ([]SessionInfo, error) {
	us, ok := c.backend.(UserStore)
	if !ok {
		return nil, fmt.Errorf("%w: %T does not implement UserStore", ErrNotSupported, c.backend)
	}
	return us.UserSessions(ctx, user, now)
}

// DeleteUserSessions implements UserStore when the backend does; otherwise
// it returns ErrNotSupported. The user's sessions stop being served from
// this cache at once.
func (c *CachingStore) DeleteUserSessions(ctx context.Context, user string, except ID) (int64, error) {
	us, ok := c.backend.(UserStore)
	if !ok {
		return 0, fmt.Errorf("%w: %T does not implement UserStore", ErrNotSupported, c.backend)
	}
	c.evictUser(user, except)
	n, err := us.DeleteUserSessions(ctx, user, except)
	c.evictUser(user, except)
	return n, err
}

// evictUser drops the cached sessions of user but except, and keeps calls
// in flight (which may return one of them) from caching their result.
func (c *CachingStore) evictUser(user string, except ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		if r := e.Value.(*entry).rec; r.User == user && id != except {
			c.removeLocked(e)
		}
	}
	c.epoch++
}

package bunstore

import (
	"sync"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// DefaultRecentWrites is how many recently written sessions a Store
// remembers unless WithRecentWrites says otherwise.
const DefaultRecentWrites = 1024

// maxRecentBlob is the largest encoded record a Store remembers; larger ones
// are reloaded after a conflict, so the memory held stays small (at most
// DefaultRecentWrites x 4 KiB by default).
const maxRecentBlob = 4 << 10

const recentShards = 16

// recentWrites remembers the last records this Store wrote, so that a save
// which conflicts with another write of this process can name the record
// that won (core.ConflictError) instead of the Session reloading it: two
// requests of one browser racing on one session then cost one statement
// less. It is only ever a hint: the replayed save is conditional on the
// remembered version, so an entry outdated by another process costs one more
// conflict, never a lost write. Sharded, because every save writes to it.
type recentWrites struct {
	perShard int
	shards   [recentShards]recentShard
}

type recentShard struct {
	mu sync.Mutex
	m  map[core.ID]recentWrite
}

type recentWrite struct {
	version uint64
	blob    []byte // encoded data, never modified
	expiry  time.Time
	created time.Time
	user    string
}

func newRecentWrites(n int) *recentWrites {
	if n <= 0 {
		return nil
	}
	return &recentWrites{perShard: max(1, (n+recentShards-1)/recentShards)}
}

func (r *recentWrites) shard(id core.ID) *recentShard {
	var h uint32 = 2166136261 // FNV-1a of the id's last bytes: ids are hashes
	for i := max(0, len(id)-4); i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &r.shards[h%recentShards]
}

// put remembers that id is at version with data blob. An older version
// never replaces a newer one (two saves of one session can finish in either
// order); a blob too large to keep drops what was remembered.
func (r *recentWrites) put(id core.ID, version uint64, blob []byte, expiry, created time.Time, user string) {
	if r == nil {
		return
	}
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, ok := sh.m[id]
	if ok && old.version >= version {
		return
	}
	if len(blob) > maxRecentBlob {
		delete(sh.m, id)
		return
	}
	if sh.m == nil {
		sh.m = make(map[core.ID]recentWrite, r.perShard)
	}
	if !ok && len(sh.m) >= r.perShard {
		for k := range sh.m { // an arbitrary entry: map order is random
			delete(sh.m, k)
			break
		}
	}
	sh.m[id] = recentWrite{version: version, blob: blob, expiry: expiry, created: created, user: user}
}

// newer returns what is remembered of id if it is newer than version.
func (r *recentWrites) newer(id core.ID, version uint64) (recentWrite, bool) {
	if r == nil {
		return recentWrite{}, false
	}
	sh := r.shard(id)
	sh.mu.Lock()
	w, ok := sh.m[id]
	sh.mu.Unlock()
	return w, ok && w.version > version
}

// forget drops id (deleted, or written with an outcome this store does not
// know).
func (r *recentWrites) forget(id core.ID) {
	if r == nil {
		return
	}
	sh := r.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// forgetAll drops everything (many sessions were deleted at once).
func (r *recentWrites) forgetAll() {
	if r == nil {
		return
	}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

package core

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// MemoryStore keeps sessions in process memory. It suits tests, examples and
// single-process programs; sessions do not survive a restart. The zero value
// is ready to use and encodes values as JSON.
//
// JSON, because core depends on nothing but the standard library; bunstore
// stores MessagePack by default, which decodes some values differently
// (time.Time comes back in time.Local, struct fields go by their msgpack
// tags). Tests that should see what production sees can set ValueCodec to
// bunstore.MsgPack.
type MemoryStore struct {
	// ValueCodec encodes values; nil means JSON. Set it before first use.
	ValueCodec Codec

	mu      sync.Mutex
	records map[ID]*Record
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Codec implements Store.
func (m *MemoryStore) Codec() Codec {
	if m.ValueCodec == nil {
		return JSON
	}
	return m.ValueCodec
}

// Create implements Store.
func (m *MemoryStore) Create(ctx context.Context, rec *Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.records[rec.ID]; ok {
		return ErrCollision
	}
	if m.records == nil {
		m.records = map[ID]*Record{}
	}
	rec.Version = 1
	m.records[rec.ID] = rec.Clone()
	return nil
}

// Save implements Store.
func (m *MemoryStore) Save(ctx context.Context, rec *Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.records[rec.ID]
	if !ok {
		return ErrConflict
	}
	if cur.Version != rec.Version {
		if cur.Version > rec.Version {
			return &ConflictError{Current: cur.Clone()}
		}
		return ErrConflict
	}
	if len(rec.Data) == 0 {
		delete(m.records, rec.ID)
		rec.Version++
		return nil
	}
	rec.Version++
	saved := rec.Clone()
	saved.Created = cur.Created // Save never changes the creation time
	m.records[rec.ID] = saved
	return nil
}

// Load implements Store.
func (m *MemoryStore) Load(ctx context.Context, id ID, now time.Time) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[id]
	if !ok || rec.Expired(now) {
		return nil, nil
	}
	return rec.Clone(), nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(ctx context.Context, id ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, id)
	return nil
}

// Take implements Store.
func (m *MemoryStore) Take(ctx context.Context, id ID, now time.Time) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[id]
	if !ok {
		return nil, nil
	}
	delete(m.records, id)
	if rec.Expired(now) {
		return nil, nil
	}
	return rec, nil
}

// DeleteExpired implements Store.
func (m *MemoryStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, rec := range m.records {
		if limit > 0 && n >= int64(limit) {
			break
		}
		if rec.Expired(now) {
			delete(m.records, id)
			n++
		}
	}
	return n, nil
}

// Len reports how many records the store holds, expired ones included.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// UserSessions implements UserStore (a scan: MemoryStore keeps no index).
func (m *MemoryStore) UserSessions(ctx context.Context, user string, now time.Time) ([]SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SessionInfo
	for id, rec := range m.records {
		if rec.User == user && !rec.Expired(now) {
			out = append(out, SessionInfo{ID: id, Created: rec.Created, Expiry: rec.Expiry})
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// DeleteUserSessions implements UserStore.
func (m *MemoryStore) DeleteUserSessions(ctx context.Context, user string, except ID) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, rec := range m.records {
		if rec.User == user && id != except {
			delete(m.records, id)
			n++
		}
	}
	return n, nil
}

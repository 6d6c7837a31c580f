package core

import "time"

// Record is what a Store keeps for one session.
type Record struct {
	// ID is the store key, derived from the client's Token.
	ID ID
	// Data maps each key to its value, encoded with the store's Codec.
	// Stores must treat the byte slices as immutable.
	Data map[string][]byte
	// Expiry is when the record stops being served, in UTC.
	Expiry time.Time
	// Version counts successful writes: Create stores version 1 and each
	// Save increments it. Save is conditional on it.
	Version uint64
}

// Clone returns a copy of r with its own Data map (the values are shared:
// they are immutable).
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Data = make(map[string][]byte, len(r.Data))
	for k, v := range r.Data {
		c.Data[k] = v
	}
	return &c
}

// Expired reports whether the record is expired at now.
func (r *Record) Expired(now time.Time) bool { return !r.Expiry.After(now) }

package core

import (
	"math"
	"time"
)

// MaxVersion is the largest version a store must be able to hold (SQL stores
// keep it in a signed 64-bit column). A Session whose record reaches it moves
// the data to a new id instead of saving a version no store can keep.
const MaxVersion = math.MaxInt64

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
	// Created is when the session was first stored, in UTC; Create stores
	// it and Save leaves it alone. The zero time means unknown (a record
	// written before stores kept it).
	Created time.Time
	// User is the key of the user the session belongs to ("" for none), set
	// with Session.SetUser. Stores that implement UserStore index it.
	User string
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

// Size is what the record's data counts against Options.MaxRecordSize: the
// bytes of every key and encoded value.
func (r *Record) Size() int { return dataSize(r.Data) }

func dataSize(m map[string][]byte) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

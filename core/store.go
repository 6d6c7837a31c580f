package core

import (
	"context"
	"errors"
	"time"
)

// ErrCollision is returned by Store.Create when a record with the same ID
// already exists. The Session draws a new token and tries again.
var ErrCollision = errors.New("sqlsessions: session id collision")

// ErrConflict is returned by Store.Save when the stored version is not the
// one the record was loaded at (another request saved first), or the record
// no longer exists. The Session reloads and replays its own changes.
var ErrConflict = errors.New("sqlsessions: session version conflict")

// ConflictError is what Store.Save may return instead of a bare ErrConflict
// when the store knows the record that beat the save (for example because
// this process wrote it): the Session then replays its changes on Current
// instead of loading the record again, saving a round trip. It wraps
// ErrConflict, so errors.Is(err, ErrConflict) holds.
//
// Current is a hint, not a promise: it may already be outdated (another
// process wrote meanwhile), so a save built on it is conditional on
// Current.Version like any other, and fails again if the hint was stale.
// It must have a Version greater than the one the failed save named; the
// caller owns it, as a record returned by Load, and checks its expiry.
type ConflictError struct {
	Current *Record
}

func (e *ConflictError) Error() string { return ErrConflict.Error() }

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Store keeps session records. Implementations must be safe for concurrent
// use. Every method honours its context.
//
// Ownership: a Record passed to Create or Save stays the caller's, and the
// store must not keep its Data map after returning (copy what it keeps); a
// Record returned by Load belongs to the caller, which may modify it.
//
// The conformance suite in package storetest pins this contract; every store
// in this project runs it.
type Store interface {
	// Codec is the codec values of this store are encoded with.
	Codec() Codec

	// Create inserts rec as a new record, storing version 1 (rec.Version is
	// set to 1 on success). If rec.ID exists already, expired or not, it
	// changes nothing and returns ErrCollision.
	Create(ctx context.Context, rec *Record) error

	// Save replaces the data and expiry of the record rec.ID if its stored
	// version is rec.Version, and stores rec.Version+1 (rec.Version is
	// incremented on success). A record with empty Data is deleted instead,
	// under the same condition. If the version differs or the record is
	// gone, it changes nothing and returns ErrConflict, or a *ConflictError
	// (which wraps it) carrying the newer record when the store knows it.
	Save(ctx context.Context, rec *Record) error

	// Load returns the record id unless it is missing or expired at now, in
	// which case it returns (nil, nil). A record that cannot be decoded is an
	// error wrapping ErrCorruptRecord.
	Load(ctx context.Context, id ID, now time.Time) (*Record, error)

	// Delete removes the record id, if any. A missing record is not an error.
	Delete(ctx context.Context, id ID) error

	// DeleteExpired removes up to limit records expired at now (limit <= 0:
	// all of them) and reports how many it removed.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error)
}

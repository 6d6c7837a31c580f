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

	// Create inserts rec as a new record with its data, expiry, creation
	// time and user, storing version 1 (rec.Version is set to 1 on success).
	// If rec.ID exists already, expired or not, it changes nothing and
	// returns ErrCollision.
	Create(ctx context.Context, rec *Record) error

	// Save replaces the data, expiry and user of the record rec.ID (not its
	// creation time) if its stored version is rec.Version, and stores
	// rec.Version+1 (rec.Version is incremented on success). A record with
	// empty Data is deleted instead, under the same condition. If the
	// version differs or the record is gone, it changes nothing and returns
	// ErrConflict, or a *ConflictError (which wraps it) carrying the newer
	// record when the store knows it.
	Save(ctx context.Context, rec *Record) error

	// Load returns the record id unless it is missing or expired at now, in
	// which case it returns (nil, nil). A record that cannot be read whole
	// (undecodable data, an expiry or version that is not a valid value) is
	// an error wrapping ErrCorruptRecord, never a panic.
	Load(ctx context.Context, id ID, now time.Time) (*Record, error)

	// Delete removes the record id, if any. A missing record is not an error.
	Delete(ctx context.Context, id ID) error

	// Take removes the record id and returns it as it was when removed, in
	// one atomic step: no write to id can land between what it returns and
	// the removal. It returns (nil, nil), and removes nothing that could be
	// served, when the record is missing or expired at now. CycleID uses it
	// to move a session to a new id without losing a write committed before.
	Take(ctx context.Context, id ID, now time.Time) (*Record, error)

	// DeleteExpired removes up to limit records expired at now (limit <= 0:
	// all of them) and reports how many it removed. Records whose expiry
	// cannot be read count as expired: a row Load reports corrupt for its
	// expiry must not outlive a purge.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error)
}

// SessionInfo describes one stored session without its data: what an
// application shows in a "your devices" list. It never holds the token.
type SessionInfo struct {
	// ID is the store key (a hash of the token): safe to show and to log.
	ID ID
	// Created is when the session was first stored (zero if unknown).
	Created time.Time
	// Expiry is when the session ends unless it is used again.
	Expiry time.Time
}

// UserStore is a Store that indexes sessions by Record.User, so that an
// application can list and revoke the sessions of one user ("log out
// everywhere", "log out other devices"). MemoryStore, CachingStore (when its
// backend is one) and bunstore's store implement it.
type UserStore interface {
	Store

	// UserSessions lists the sessions of user that are live at now, oldest
	// first.
	UserSessions(ctx context.Context, user string, now time.Time) ([]SessionInfo, error)

	// DeleteUserSessions deletes every session of user except the one whose
	// id is except ("" deletes them all), and reports how many it deleted.
	DeleteUserSessions(ctx context.Context, user string, except ID) (int64, error)
}

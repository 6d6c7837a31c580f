package core

import (
	"errors"
	"fmt"
)

// ErrSuperseded is returned by Commit and CycleID when another request
// deleted the session (Flush, a log-out, a revocation) or moved it to a new
// id (CycleID) while this one ran: this request's changes are dropped, never
// written back under the old id, and the client keeps whatever cookie the
// other request gave it. The middleware answers such a request with an
// error status instead of acknowledging a change it did not store.
var ErrSuperseded = errors.New("sqlsessions: the session was deleted or given a new id by a concurrent request; this request's changes were not saved")

// ErrNoSession is returned by every method of a nil *Session: the handler
// asked for the session of a request that no session middleware served.
var ErrNoSession = errors.New("sqlsessions: no session in this request: wrap the handler with the session middleware (httpadapter.Manager.Middleware)")

// ErrRecordTooLarge is wrapped by the *RecordTooLargeError that Insert,
// Update and Commit return when a session's data would exceed
// Options.MaxRecordSize.
var ErrRecordTooLarge = errors.New("sqlsessions: session record too large")

// RecordTooLargeError reports a change refused because the session's data
// would exceed the configured limit; the session is left as it was.
type RecordTooLargeError struct {
	// Key is the key whose change was refused ("" when the limit was found
	// exceeded at Commit, after merging a concurrent request's changes).
	Key string
	// Size is what the data would have measured, Limit the limit, both in
	// bytes of keys plus encoded values.
	Size, Limit int
}

func (e *RecordTooLargeError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("sqlsessions: setting session key %q would make the session %d bytes, over its limit of %d bytes (Options.MaxRecordSize)", e.Key, e.Size, e.Limit)
	}
	return fmt.Sprintf("sqlsessions: the session's data is %d bytes, over its limit of %d bytes (Options.MaxRecordSize)", e.Size, e.Limit)
}

// Unwrap returns ErrRecordTooLarge.
func (e *RecordTooLargeError) Unwrap() error { return ErrRecordTooLarge }

// ErrTooManyConflicts is returned by Commit when every attempt to save met a
// newer write; Options.MaxConflictRetries bounds the attempts.
var ErrTooManyConflicts = errors.New("sqlsessions: session save kept conflicting with concurrent writes")

package core

import (
	"fmt"
	"time"
)

// DefaultSessionEndLifetime is how long the record of a session that expires
// "on session end" is kept by default: the browser drops the cookie when it
// closes, but the server cannot know when that happens. Two weeks, as in
// tower-sessions.
const DefaultSessionEndLifetime = 14 * 24 * time.Hour

type expiryKind uint8

const (
	expirySessionEnd expiryKind = iota
	expiryInactivity
	expiryAt
)

// Expiry says when a session ends. The zero value is OnSessionEnd.
type Expiry struct {
	kind expiryKind
	d    time.Duration
	at   time.Time
}

// OnSessionEnd expires the session when the browser session ends: the cookie
// has no Max-Age, and the record is kept for the configured session-end
// lifetime (DefaultSessionEndLifetime unless changed).
func OnSessionEnd() Expiry { return Expiry{} }

// OnInactivity expires the session d after its last save; each save renews it,
// in steps of 1% of d (at most a minute) so that most saves leave the stored
// deadline, an indexed column, unchanged.
func OnInactivity(d time.Duration) Expiry { return Expiry{kind: expiryInactivity, d: d} }

// AtDateTime expires the session at t, whatever happens before.
func AtDateTime(t time.Time) Expiry { return Expiry{kind: expiryAt, at: t.UTC()} }

// IsOnSessionEnd reports whether e is OnSessionEnd.
func (e Expiry) IsOnSessionEnd() bool { return e.kind == expirySessionEnd }

// Inactivity returns the duration of an OnInactivity expiry.
func (e Expiry) Inactivity() (time.Duration, bool) { return e.d, e.kind == expiryInactivity }

// DateTime returns the time of an AtDateTime expiry.
func (e Expiry) DateTime() (time.Time, bool) { return e.at, e.kind == expiryAt }

// Deadlines are kept between MinDeadline and MaxDeadline, the range every
// store holds (MySQL's DATETIME ends with the year 9999, and SQLite's
// microseconds since the epoch overflow in the year 294247): an expiry
// beyond them is clamped where it is computed, so a record never saves with
// a deadline that a store cannot write or read back.
var (
	// MinDeadline is the earliest deadline a record gets: any earlier one
	// has passed anyway.
	MinDeadline = time.Unix(0, 0).UTC()
	// MaxDeadline is the latest deadline a record gets: the last
	// microsecond of the year 9999.
	MaxDeadline = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// clampDeadline keeps t within [MinDeadline, MaxDeadline], in UTC.
func clampDeadline(t time.Time) time.Time {
	switch {
	case t.Before(MinDeadline):
		return MinDeadline
	case t.After(MaxDeadline):
		return MaxDeadline
	}
	return t.UTC()
}

// Deadline is when a record saved at now with this expiry stops being
// valid, clamped to [MinDeadline, MaxDeadline].
func (e Expiry) Deadline(now time.Time, sessionEndLifetime time.Duration) time.Time {
	switch e.kind {
	case expiryInactivity:
		return clampDeadline(now.Add(e.d))
	case expiryAt:
		return clampDeadline(e.at)
	default:
		if sessionEndLifetime <= 0 {
			sessionEndLifetime = DefaultSessionEndLifetime
		}
		return clampDeadline(now.Add(sessionEndLifetime))
	}
}

// maxRenewalStep bounds renewalStep.
const maxRenewalStep = time.Minute

// renewalStep is how far a renewed deadline may run ahead of the stored one
// before it is written: 1% of the lifetime, at most a minute. Keeping the
// stored deadline otherwise leaves the indexed expiry column unchanged, so a
// database can update the row in place (PostgreSQL HOT updates) instead of
// writing new index entries at every save.
func (e Expiry) renewalStep(sessionEndLifetime time.Duration) time.Duration {
	var life time.Duration
	switch e.kind {
	case expiryInactivity:
		life = e.d
	case expiryAt:
		return 0 // a fixed deadline does not move
	default:
		life = sessionEndLifetime
		if life <= 0 {
			life = DefaultSessionEndLifetime
		}
	}
	return min(life/100, maxRenewalStep)
}

// renewed is the deadline of a record stored with deadline stored and saved
// again at now: Deadline, unless that is less than a renewal step later than
// stored, in which case stored stands. A session may so end up to 1% of its
// lifetime (at most a minute) before Deadline, never after it.
func (e Expiry) renewed(stored, now time.Time, sessionEndLifetime time.Duration) time.Time {
	next := e.Deadline(now, sessionEndLifetime)
	if !next.Before(stored) && next.Sub(stored) < e.renewalStep(sessionEndLifetime) {
		return stored
	}
	return next
}

// MaxAge is the cookie Max-Age for this expiry at now: ok is false for
// OnSessionEnd (a browser-session cookie); otherwise the whole seconds left,
// never negative.
func (e Expiry) MaxAge(now time.Time) (seconds int, ok bool) {
	var left time.Duration
	switch e.kind {
	case expiryInactivity:
		left = min(e.d, MaxDeadline.Sub(now))
	case expiryAt:
		left = clampDeadline(e.at).Sub(now)
	default:
		return 0, false
	}
	if left < 0 {
		return 0, true
	}
	return int(left / time.Second), true
}

// String describes the expiry for logs and errors.
func (e Expiry) String() string {
	switch e.kind {
	case expiryInactivity:
		return fmt.Sprintf("OnInactivity(%s)", e.d)
	case expiryAt:
		return fmt.Sprintf("AtDateTime(%s)", e.at.Format(time.RFC3339))
	default:
		return "OnSessionEnd"
	}
}

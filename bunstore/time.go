package bunstore

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun/dialect"
)

// mysqlLayout is how expiries are written to a MySQL DATETIME(6) column:
// UTC wall-clock time with microseconds.
const mysqlLayout = "2006-01-02 15:04:05.000000"

// expiryArg converts an expiry (or the current time for comparisons) to the
// column's representation, truncated to microseconds (the precision every
// dialect keeps):
//
//   - PostgreSQL: a UTC time.Time for timestamptz.
//   - MySQL: a UTC wall-clock string for DATETIME(6), so the result does not
//     depend on the DSN's loc or the session time_zone.
//   - SQLite: integer microseconds since the Unix epoch, compared
//     numerically.
func (s *Store) expiryArg(t time.Time) any {
	t = storedTime(t)
	switch s.dialect {
	case dialect.MySQL:
		return t.Format(mysqlLayout)
	case dialect.SQLite:
		return t.UnixMicro()
	default:
		return t
	}
}

// storedTime is t as every dialect stores it: UTC, whole microseconds,
// clamped to [core.MinDeadline, core.MaxDeadline] as core clamps deadlines.
// The Store is public API too: a time beyond that range was refused by
// MySQL (the year 10000), PostgreSQL (300000) or silently mangled (pgx wrote
// the largest time.Time as the year 0, SQLite's microseconds overflowed),
// saving records that never loaded. The zero time stays zero (created_at
// unknown).
func storedTime(t time.Time) time.Time {
	switch {
	case t.IsZero():
		return t
	case t.Before(core.MinDeadline):
		return core.MinDeadline
	case t.After(core.MaxDeadline):
		return core.MaxDeadline
	}
	return t.UTC().Truncate(time.Microsecond)
}

// createdArg is expiryArg for the nullable created_at column: NULL for the
// zero time (unknown).
func (s *Store) createdArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return s.expiryArg(t)
}

// userArg is the user_key column's value: NULL for no user, so the partial
// index holds only bound sessions.
func userArg(user string) any {
	if user == "" {
		return nil
	}
	return user
}

// timeScanner reads a time column back as a UTC time.Time, whatever form
// the driver returns it in. A value that is not a time the store could have
// written (PostgreSQL's infinity, text in SQLite's integer column, a
// timestamp beyond core.MaxDeadline) is kept in err rather than failing the
// scan, so the row is reported corrupt instead of breaking every request.
type timeScanner struct {
	t        time.Time
	err      error
	mysql    bool
	nullable bool
}

func (e *timeScanner) Scan(src any) error {
	e.t, e.err = time.Time{}, nil
	switch v := src.(type) {
	case nil:
		if !e.nullable {
			e.err = errors.New("NULL time")
		}
		return nil
	case time.Time:
		if e.mysql {
			// DATETIME has no zone: the driver labelled the stored UTC
			// wall clock with its loc. Keep the wall clock, as UTC.
			e.t = time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), time.UTC)
		} else {
			e.t = v.UTC()
		}
	case int64:
		if v < minStoredMicros || v > maxStoredMicros {
			e.err = fmt.Errorf("time %d µs is out of range", v)
			return nil
		}
		e.t = time.UnixMicro(v).UTC()
	case float64:
		// SQLite keeps a non-integral number written to an INTEGER column
		// as a REAL. In range it is a time, and must be: the purge could
		// not tell it from the integers around it in the expiry index.
		if !(v >= float64(minStoredMicros) && v <= float64(maxStoredMicros)) { // NaN too
			e.err = fmt.Errorf("time %g µs is out of range", v)
			return nil
		}
		e.t = time.UnixMicro(int64(v)).UTC()
	case []byte:
		e.parse(string(v))
	case string:
		e.parse(v)
	default:
		e.err = fmt.Errorf("cannot read a time from %T", src)
	}
	if e.err == nil && e.t.After(core.MaxDeadline) {
		e.err = fmt.Errorf("time %v is beyond %v", e.t, core.MaxDeadline)
	}
	return nil
}

// Microseconds since the epoch of the first and last times a store writes.
var (
	minStoredMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxStoredMicros = core.MaxDeadline.UnixMicro()
)

// parse reads a time from text, which only MySQL returns for a time
// (DATETIME without parseTime). Elsewhere text is no time: PostgreSQL's
// drivers return [-]infinity as text, and SQLite compares text above every
// number, so a text expiry would pass "expiry_date > now", expired or not.
func (e *timeScanner) parse(s string) {
	if !e.mysql {
		e.err = fmt.Errorf("cannot read a time from text %s", shortQuote(s))
		return
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", s, time.UTC)
	if err != nil {
		e.err = fmt.Errorf("cannot read a time from %s", shortQuote(s))
		return
	}
	e.t = t
}

// shortQuote quotes s for an error message, cut to 64 bytes: a corrupt row
// can hold megabytes, and the error is logged at every request.
func shortQuote(s string) string {
	const n = 64
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:n], len(s))
}

// versionScanner reads the version column, keeping a value that is not a
// positive 64-bit integer (SQLite turns an overflowing integer into a REAL)
// in err.
type versionScanner struct {
	v   uint64
	err error
}

func (e *versionScanner) Scan(src any) error {
	e.v, e.err = 0, nil
	switch v := src.(type) {
	case int64:
		if v < 0 {
			e.err = fmt.Errorf("negative version %d", v)
			return nil
		}
		e.v = uint64(v)
	case []byte:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 0 {
			e.err = fmt.Errorf("version %s is not a non-negative integer", shortQuote(string(v)))
			return nil
		}
		e.v = uint64(n)
	default:
		e.err = fmt.Errorf("version of type %T is not an integer", src)
	}
	return nil
}

package bunstore

import (
	"fmt"
	"time"

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

// storedTime is t as every dialect stores it: UTC, whole microseconds.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// expiryScanner reads an expiry column back as a UTC time.Time, whatever
// form the driver returns it in.
type expiryScanner struct {
	t     *time.Time
	mysql bool
}

func (e *expiryScanner) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		if e.mysql {
			// DATETIME has no zone: the driver labelled the stored UTC
			// wall clock with its loc. Keep the wall clock, as UTC.
			*e.t = time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), time.UTC)
		} else {
			*e.t = v.UTC()
		}
	case int64:
		*e.t = time.UnixMicro(v).UTC()
	case []byte:
		return e.parse(string(v))
	case string:
		return e.parse(v)
	default:
		return fmt.Errorf("bunstore: cannot read expiry_date from %T", src)
	}
	return nil
}

func (e *expiryScanner) parse(s string) error {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", s, time.UTC)
	if err != nil {
		return fmt.Errorf("bunstore: cannot read expiry_date %q: %w", s, err)
	}
	*e.t = t
	return nil
}

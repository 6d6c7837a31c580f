package bunstoretests

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/uptrace/bun"
)

// TestStoreClampsTimes: Create called directly (core clamps deadlines, but
// the Store is public API too) with expiries and creation times beyond what
// a database holds stores them clamped to [core.MinDeadline,
// core.MaxDeadline], alike on every backend (a past expiry is expired). Before, MariaDB refused the
// year 10000, PostgreSQL the year 300000, pgx wrote the largest time.Time
// as the year 0, and SQLite's microseconds overflowed: records that saved
// and then never loaded.
func TestStoreClampsTimes(t *testing.T) {
	times := map[string]time.Time{
		"year 10000":   time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		"year 292278":  time.Date(292278, 1, 1, 0, 0, 0, 0, time.UTC),
		"year 300000":  time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC),
		"largest time": time.Unix(math.MaxInt64-62135596801, 999999999).UTC(),
		"MaxDeadline":  core.MaxDeadline,
		"year 1969":    time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC),
		"year -5":      time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	clamp := func(t time.Time) time.Time {
		switch {
		case t.Before(core.MinDeadline):
			return core.MinDeadline
		case t.After(core.MaxDeadline):
			return core.MaxDeadline
		}
		return t.UTC()
	}
	eachDialect(t, func(t *testing.T, db *bun.DB) {
		s := dbtest.NewStore(t, db)
		ctx := context.Background()
		for name, tm := range times {
			for _, field := range []string{"expiry", "created"} {
				rec := newRecord(t, s, now().Add(time.Hour), "n", 1)
				if field == "expiry" {
					rec.Expiry = tm
				} else {
					rec.Created = tm
				}
				if err := s.Create(ctx, rec); err != nil {
					t.Errorf("%s %s: Create: %v", field, name, err)
					continue
				}
				got, err := s.Load(ctx, rec.ID, now())
				if field == "expiry" && tm.Before(core.MinDeadline) {
					if got != nil || err != nil {
						t.Errorf("expiry %s: Load: %+v, %v; want an expired record", name, got, err)
					}
					continue
				}
				if err != nil || got == nil {
					t.Errorf("%s %s: Create succeeded, then Load: %+v, %v", field, name, got, err)
					continue
				}
				if field == "expiry" && !got.Expiry.Equal(clamp(tm)) {
					t.Errorf("expiry %s: loads as %v, want %v", name, got.Expiry, clamp(tm))
				}
				if field == "created" && !got.Created.Equal(clamp(tm)) {
					t.Errorf("created %s: loads as %v, want %v", name, got.Created, clamp(tm))
				}
			}
		}
	})
}

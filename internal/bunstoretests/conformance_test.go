package bunstoretests

import (
	"testing"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/core/storetest"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// TestConformance runs core's store suite on every dialect and driver, each
// in a fresh schema (or file), once with the default table name and once
// with a custom schema and table.
func TestConformance(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			db := d.Open(t)
			s := dbtest.NewStore(t, db)
			storetest.Run(t, func(*testing.T) core.Store { return s })
		})
		t.Run(d.Name+"-custom-names", func(t *testing.T) {
			if testing.Short() {
				t.Skip("the suite under a custom schema and table runs without -short (names are also checked by the schema tests)")
			}
			t.Parallel()
			db := d.Open(t)
			s := dbtest.NewStore(t, db, bunstore.WithTableName("My_Sessions_2"))
			storetest.Run(t, func(*testing.T) core.Store { return s })
		})
	}
}

// TestConformanceCaching runs the suite on core's CachingStore in front of
// the SQL store.
func TestConformanceCaching(t *testing.T) {
	for _, d := range dbtest.Dialects() {
		if d.Name == "postgres-libpq" {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			s := core.NewCachingStore(dbtest.NewStore(t, d.Open(t)), core.CachingOptions{MaxEntries: 100})
			storetest.Run(t, func(*testing.T) core.Store { return s })
		})
	}
}

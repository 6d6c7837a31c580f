package reliability

import (
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

var soakDuration = flag.Duration("soak", 2*time.Second, "how long TestSoak runs on each backend (the long run is tools/cmd/sessionsoak)")

// openBackend returns a migrated store for a soak on name: postgres, mysql
// or sqlite (sqlitewasm.Open on a file in a temp directory).
func openBackend(t testing.TB, name string) core.Store {
	s, _ := openBackendDB(t, name)
	return s
}

// openBackendDB is openBackend that also returns the store's database.
func openBackendDB(t testing.TB, name string) (*bunstore.Store, *bun.DB) {
	t.Helper()
	var db *bun.DB
	switch name {
	case "postgres":
		db = dbtest.OpenPostgres(t)
	case "mysql":
		db = dbtest.OpenMySQL(t)
	case "sqlite":
		var err error
		db, err = sqlitewasm.Open(filepath.Join(t.TempDir(), "soak.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	default:
		t.Fatalf("unknown backend %q", name)
	}
	return dbtest.NewStore(t, db), db
}

// tableName is the qualified name of s's table, for direct SQL.
func tableName(s *bunstore.Store) bun.Ident {
	if s.SchemaName() == "" {
		return bun.Ident(s.TableName())
	}
	return bun.Ident(s.SchemaName() + "." + s.TableName())
}

var soakBackends = []string{"postgres", "mysql", "sqlite"}

// TestSoak runs the mixed workload through the middleware on every backend
// and requires zero errors and zero broken invariants.
func TestSoak(t *testing.T) {
	for _, name := range soakBackends {
		t.Run(name, func(t *testing.T) {
			store := openBackend(t, name)
			m, err := httpadapter.New(store, httpadapter.WithExpiry(core.OnInactivity(time.Hour)),
				httpadapter.WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			rep := Soak(context.Background(), m, SoakOptions{Duration: *soakDuration, Log: t.Logf})
			t.Logf("%s: %v", name, rep)
			if rep.Errors != 0 || rep.Violations != 0 {
				t.Errorf("%s: %d errors, %d violations; first: %q", name, rep.Errors, rep.Violations, rep.Samples)
			}
			if rep.Requests < 50 || rep.Cycles == 0 || rep.Flushes == 0 || rep.Sessions < 8 {
				t.Errorf("%s: the soak did too little to mean anything: %v", name, rep)
			}
		})
	}
}

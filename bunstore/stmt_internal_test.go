package bunstore

import (
	"database/sql/driver"
	"testing"
)

type otherDriver struct{}

func (otherDriver) Open(string) (driver.Conn, error) { return nil, driver.ErrBadConn }

// TestCachesStatements: only pgx's database/sql driver counts as caching
// statements itself (internal/bunstoretests checks pgx and lib/pq).
func TestCachesStatements(t *testing.T) {
	for _, d := range []driver.Driver{nil, otherDriver{}, &otherDriver{}} {
		if cachesStatements(d) {
			t.Errorf("cachesStatements(%T) = true", d)
		}
	}
}

package dbtest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/internal/dburl"
	"github.com/uptrace/bun"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Skipf(f string, args ...any)  { r.skipped = fmt.Sprintf(f, args...) }
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }

func TestUnreachableSkipsUnlessCI(t *testing.T) {
	if noSockets {
		t.Skip("no network on " + runtime.GOOS + ": unreachable always skips")
	}
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	unreachable(r, "MySQL", errors.New("connection refused"))
	if r.fatal != "" || !strings.Contains(r.skipped, "MySQL is not reachable") || !strings.Contains(r.skipped, "connection refused") {
		t.Errorf("without CI: skipped %q, fatal %q", r.skipped, r.fatal)
	}
	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	unreachable(r, "MySQL", errors.New("connection refused"))
	if r.skipped != "" || !strings.Contains(r.fatal, "CI is set") {
		t.Errorf("with CI: skipped %q, fatal %q", r.skipped, r.fatal)
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(), UniqueName()
	if a == b || len(a) > 63 || strings.ToLower(a) != a {
		t.Errorf("UniqueName: %q, %q", a, b)
	}
}

// TestUnreachableServerSkips: a server that does not answer skips the test
// that needs it (CI unset).
func TestUnreachableServerSkips(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv(dburl.EnvPostgres, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	t.Setenv(dburl.EnvMySQL, "mysql://root@127.0.0.1:1/test?timeout=2s")
	for name, open := range map[string]func(testing.TB) *bun.DB{"postgres": OpenPostgres, "libpq": OpenPostgresPQ, "mysql": OpenMySQL} {
		var inner *testing.T
		t.Run(name, func(t *testing.T) {
			inner = t
			open(t)
			t.Error("open returned for an unreachable server")
		})
		if !inner.Skipped() {
			t.Errorf("%s: not skipped", name)
		}
	}
}

package dbtest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/uptrace/bun"
)

func TestMySQLURLToDSN(t *testing.T) {
	for in, want := range map[string]string{
		"mysql://root@127.0.0.1:3306/test":                       "root@tcp(127.0.0.1:3306)/test?loc=UTC&parseTime=true",
		"mysql://u:p%40ss@db.local/app?parseTime=false&tls=true": "u:p@ss@tcp(db.local:3306)/app?loc=UTC&parseTime=false&tls=true",
		"mysql://db:3307/x":                                      "tcp(db:3307)/x?loc=UTC&parseTime=true",
		"root@tcp(127.0.0.1:3306)/test?parseTime=true":           "root@tcp(127.0.0.1:3306)/test?parseTime=true",
	} {
		got, err := MySQLURLToDSN(in)
		if err != nil || got != want {
			t.Errorf("MySQLURLToDSN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := MySQLURLToDSN("mysql://[::1"); err == nil {
		t.Error("a malformed URL was accepted")
	}
}

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
	t.Setenv(EnvPostgres, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	t.Setenv(EnvMySQL, "mysql://root@127.0.0.1:1/test?timeout=2s")
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

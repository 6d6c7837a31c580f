package dbtest

import (
	"os"
	"runtime"
	"testing"

	"github.com/sqlsessions/sqlsessions/internal/pgbouncer"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// PgBouncerPath is where Debian's pgbouncer package installs the binary;
// PgBouncer looks there first, then in PATH.
const PgBouncerPath = pgbouncer.Path

// PgBouncerURL starts a PgBouncer in transaction pooling mode in front of
// the PostgreSQL server of serverURL (a postgres:// URL, e.g. PostgresURL()
// or a fresh database's) and returns serverURL with its host and port
// replaced by PgBouncer's: the same user, database and parameters, one
// pooler in between. Add the driver settings PgBouncer needs yourself (for
// pgx: default_query_exec_mode=exec).
//
// PgBouncer runs as a child process of the test (package
// internal/pgbouncer starts it), listening on a free loopback port, with
// its configuration in a temporary directory; its log is shown when the
// test fails, and it is stopped when the test ends (on Linux also when the
// test process dies without cleaning up).
// It connects to the server as serverURL's user (and password) whatever
// user a client names (auth_type=any), so it needs no user list.
//
// Without a pgbouncer binary the test is skipped, unless CI is set: then it
// fails.
func PgBouncerURL(t testing.TB, serverURL string) string {
	t.Helper()
	return StartPgBouncer(t, serverURL).URL
}

// StartPgBouncer is PgBouncerURL returning the running PgBouncer itself,
// for tests that watch whether it is still running (Exited) or read its log.
func StartPgBouncer(t testing.TB, serverURL string) *pgbouncer.Process {
	t.Helper()
	if noSockets {
		t.Skipf("PgBouncer: a %s module cannot start processes or open network connections, skipping", runtime.GOOS)
	}
	bin := pgBouncerBin(t)
	p, err := pgbouncer.Start(serverURL, pgbouncer.Config{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("PgBouncer: %v", err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pgbouncer log:\n%s", p.Log())
		}
	})
	return p
}

// pgBouncerBin returns the pgbouncer binary, or skips the test (fails it
// under CI).
func pgBouncerBin(t testing.TB) string {
	t.Helper()
	bin, err := pgbouncer.Bin()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgbouncer is not installed (CI is set, so this is a failure, not a skip; .ci/run installs Debian's pgbouncer package)")
		}
		t.Skipf("pgbouncer is not installed, skipping (apt-get install pgbouncer; set CI=1 to make this a failure)")
	}
	return bin
}

// OpenPostgresPgBouncer starts a PgBouncer in transaction pooling mode in
// front of PostgresURL() (see PgBouncerURL) and opens it with driverName
// ("pgx" or "postgres" for lib/pq), adding params (e.g.
// "default_query_exec_mode=exec") to the URL's query.
func OpenPostgresPgBouncer(t testing.TB, driverName, params string) *bun.DB {
	t.Helper()
	u := withParams(PgBouncerURL(t, PostgresURL()), params)
	return bun.NewDB(pool(t, "PostgreSQL through PgBouncer", driverName, u, PoolSize), pgdialect.New())
}

package dbtest

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestPgBouncerURL: the URL keeps the server URL's user, database and
// parameters with PgBouncer's loopback address, queries pass through
// PgBouncer in transaction mode, and the test's end stops PgBouncer.
func TestPgBouncerURL(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		server := PostgresURL()
		got := PgBouncerURL(t, server)
		su, _ := url.Parse(server)
		gu, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if gu.Host == su.Host || gu.Hostname() != "127.0.0.1" || gu.Path != su.Path || gu.RawQuery != su.RawQuery || gu.User.String() != su.User.String() {
			t.Fatalf("PgBouncerURL(%q) = %q", server, got)
		}
		addr = gu.Host
		db := pool(t, "PostgreSQL through PgBouncer", "pgx", withParams(got, "default_query_exec_mode=exec"), 2)
		var version string
		// PgBouncer answers SHOW on its admin database only; a query
		// reaching PostgreSQL proves the pooler forwards.
		if err := db.QueryRowContext(context.Background(), "SELECT current_setting('server_version')").Scan(&version); err != nil || version == "" {
			t.Fatalf("query through PgBouncer: %q, %v", version, err)
		}
	})
	if addr == "" {
		return // skipped
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("PgBouncer still accepts connections on %s after its test ended", addr)
	}
}

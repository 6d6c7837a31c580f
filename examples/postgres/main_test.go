package main

import (
	"net/url"
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// TestServer builds the example, runs it against a fresh PostgreSQL
// database, drives the counter over HTTP and stops it with SIGTERM.
func TestServer(t *testing.T) {
	databaseURL := exampletest.PostgresURL(t)
	exampletest.RunCounter(t, exampletest.Build(t), "DATABASE_URL="+databaseURL)
}

// TestServerPgBouncer runs the example through PgBouncer in transaction
// pooling mode (started by the test) with the DATABASE_URL README
// documents for it, and wants every request of 20 concurrent clients to
// succeed: statements prepared on one server connection must not be
// looked for on another.
func TestServerPgBouncer(t *testing.T) {
	u, err := url.Parse(dbtest.PgBouncerURL(t, exampletest.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	databaseURL := u.String()
	p := exampletest.Start(t, exampletest.Build(t), "DATABASE_URL="+databaseURL)
	exampletest.Counter(t, p.URL)
	exampletest.Concurrent(t, p.URL, 20, 200)
	p.Stop(t, exampletest.SIGTERM)
}

func TestErrors(t *testing.T) {
	exampletest.Failures(t, exampletest.Build(t), []exampletest.FailCase{
		{Name: "missing DATABASE_URL", Env: nil, Want: []string{"postgres example:", "DATABASE_URL is not set", "postgres://"}},
		{Name: "unreachable", Env: []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/test"}, Want: []string{"cannot reach the database", "127.0.0.1:1"}},
		{Name: "not a postgres URL", Env: []string{"DATABASE_URL=mysql://root:" + exampletest.Secret + "@127.0.0.1/test"}, Want: []string{"bad database URL", "postgres://"}},
		{Name: "bad port", Env: []string{"DATABASE_URL=postgres://postgres@127.0.0.1:port/test"}, Want: []string{"bad database URL"}},
	})
}

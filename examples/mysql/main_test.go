package main

import (
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// TestServer builds the example, runs it against the MySQL/MariaDB server,
// drives the counter over HTTP and stops it with SIGTERM.
func TestServer(t *testing.T) {
	databaseURL := exampletest.MySQLURL(t)
	exampletest.RunCounter(t, exampletest.Build(t), "DATABASE_URL="+databaseURL)
}

func TestErrors(t *testing.T) {
	exampletest.Failures(t, exampletest.Build(t), []exampletest.FailCase{
		{Name: "missing DATABASE_URL", Env: nil, Want: []string{"mysql example:", "DATABASE_URL is not set", "mysql://"}},
		{Name: "unreachable", Env: []string{"DATABASE_URL=mysql://root@127.0.0.1:1/test"}, Want: []string{"cannot reach the database", "127.0.0.1:1"}},
		{Name: "not a mysql URL", Env: []string{"DATABASE_URL=postgres://postgres:" + exampletest.Secret + "@127.0.0.1/test"}, Want: []string{"bad database URL", "mysql://"}},
		{Name: "DSN instead of URL", Env: []string{"DATABASE_URL=root@tcp(127.0.0.1:3306)/test"}, Want: []string{"bad database URL"}},
		{Name: "bad port", Env: []string{"DATABASE_URL=mysql://root:" + exampletest.Secret + "@127.0.0.1:port/test"}, Want: []string{"bad database URL", "port"}},
		{Name: "unknown parameter", Env: []string{"DATABASE_URL=mysql://root@127.0.0.1/test?frobnicate=1"}, Want: []string{"unsupported parameter", "frobnicate"}},
	})
}

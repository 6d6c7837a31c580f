package main

import (
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// TestServer builds the example, runs it against a fresh PostgreSQL
// database, drives the counter over HTTP and stops it with SIGTERM.
func TestServer(t *testing.T) {
	databaseURL := exampletest.PostgresURL(t)
	exampletest.RunCounter(t, exampletest.Build(t), "DATABASE_URL="+databaseURL)
}

func TestErrors(t *testing.T) {
	exampletest.Failures(t, exampletest.Build(t), []exampletest.FailCase{
		{Name: "missing DATABASE_URL", Env: nil, Want: []string{"postgres example:", "DATABASE_URL is not set", "postgres://"}},
		{Name: "unreachable", Env: []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/test"}, Want: []string{"cannot reach the database", "127.0.0.1:1"}},
		{Name: "not a postgres URL", Env: []string{"DATABASE_URL=mysql://root:" + exampletest.Secret + "@127.0.0.1/test"}, Want: []string{"bad database URL", "postgres://"}},
		{Name: "bad port", Env: []string{"DATABASE_URL=postgres://postgres@127.0.0.1:port/test"}, Want: []string{"bad database URL"}},
	})
}

package main

import (
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// TestServer builds the example, runs it against a fresh PostgreSQL
// database, drives the counter over HTTP and stops it with SIGTERM.
func TestServer(t *testing.T) {
	databaseURL := exampletest.PostgresURL(t)
	bin := exampletest.Build(t)
	p := exampletest.Start(t, bin, "DATABASE_URL="+databaseURL)
	token := exampletest.Counter(t, p.URL)
	if !testing.Short() {
		exampletest.Expiry(t, p.URL, token, 3)
	}
	p.Stop(t, exampletest.SIGTERM)
}

func TestErrors(t *testing.T) {
	bin := exampletest.Build(t)
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"missing DATABASE_URL", nil, []string{"postgres example:", "DATABASE_URL is not set", "postgres://"}},
		{"unreachable", []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/test"}, []string{"cannot reach the database", "127.0.0.1:1"}},
		{"not a postgres URL", []string{"DATABASE_URL=mysql://root:s3cret@127.0.0.1/test"}, []string{"bad database URL", "postgres://"}},
		{"bad port", []string{"DATABASE_URL=postgres://postgres@127.0.0.1:port/test"}, []string{"bad database URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			line := exampletest.Fail(t, bin, tt.env, tt.want...)
			if tt.name == "not a postgres URL" && strings.Contains(line, "s3cret") {
				t.Errorf("the error shows the password: %s", line)
			}
		})
	}
}

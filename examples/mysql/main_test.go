package main

import (
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// TestServer builds the example, runs it against the MySQL/MariaDB server,
// drives the counter over HTTP and stops it with SIGTERM.
func TestServer(t *testing.T) {
	databaseURL := exampletest.MySQLURL(t)
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
		{"missing DATABASE_URL", nil, []string{"mysql example:", "DATABASE_URL is not set", "mysql://"}},
		{"unreachable", []string{"DATABASE_URL=mysql://root@127.0.0.1:1/test"}, []string{"cannot reach the database", "127.0.0.1:1"}},
		{"not a mysql URL", []string{"DATABASE_URL=postgres://postgres:s3cret@127.0.0.1/test"}, []string{"bad database URL", "mysql://"}},
		{"DSN instead of URL", []string{"DATABASE_URL=root@tcp(127.0.0.1:3306)/test"}, []string{"bad database URL"}},
		{"bad port", []string{"DATABASE_URL=mysql://root:s3cret@127.0.0.1:port/test"}, []string{"bad database URL", "port"}},
		{"unknown parameter", []string{"DATABASE_URL=mysql://root@127.0.0.1/test?frobnicate=1"}, []string{"unsupported parameter", "frobnicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			line := exampletest.Fail(t, bin, tt.env, tt.want...)
			if strings.Contains(line, "s3cret") {
				t.Errorf("the error shows the password: %s", line)
			}
		})
	}
}

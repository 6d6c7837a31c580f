package main

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// TestServerWithoutCgo builds the example with CGO_ENABLED=0 (the build
// must work: SQLite is pure Go here), runs it with no DATABASE_URL (an
// in-memory database), drives the counter over HTTP and stops it with
// SIGTERM.
func TestServerWithoutCgo(t *testing.T) {
	exampletest.RunCounter(t, exampletest.Build(t, "CGO_ENABLED=0"))
}

// TestFileSurvivesRestart runs the example on a file database, stops it
// with Ctrl-C (SIGINT), starts it again and continues the same session.
func TestFileSurvivesRestart(t *testing.T) {
	bin := exampletest.Build(t)
	dsn := "DATABASE_URL=sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "sessions.db"))

	p := exampletest.Start(t, bin, dsn)
	token := exampletest.Counter(t, p.URL)
	p.Stop(t, syscall.SIGINT)

	p = exampletest.Start(t, bin, dsn)
	v := exampletest.Get(t, p.URL+"/", token)
	if v.Body != "Current count: 3" {
		t.Errorf("after a restart: %q, want the session to go on at 3", v.Body)
	}
	p.Stop(t, exampletest.SIGTERM)
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	exampletest.Failures(t, exampletest.Build(t), []exampletest.FailCase{
		{Name: "not a sqlite URL", Env: []string{"DATABASE_URL=postgres://postgres:" + exampletest.Secret + "@127.0.0.1/test"}, Want: []string{"sqlite example:", "DATABASE_URL", "not SQLite"}},
		{Name: "missing directory", Env: []string{"DATABASE_URL=sqlite://" + filepath.ToSlash(filepath.Join(dir, "no", "such", "dir", "s.db"))}, Want: []string{"unable to open database file"}},
		{Name: "bad listen address", Env: []string{"ADDR=not-an-address"}, Want: []string{"listen on not-an-address"}},
	})
}

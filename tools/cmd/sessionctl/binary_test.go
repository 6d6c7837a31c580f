package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

// TestBinary builds sessionctl and runs it as a real process: exit codes,
// stdout and stderr as an operator's shell sees them.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sessionctl")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL := "sqlite://" + filepath.Join(dir, "sessions.db")
	sh := func(env []string, args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("running sessionctl: %v", err)
		}
		return result{code, out.String(), errb.String()}
	}
	env := []string{"DATABASE_URL=" + dbURL}

	if r := sh(env, "migrate"); r.code != 0 || r.stdout != "table tower_sessions is ready\n" {
		t.Fatalf("migrate: %+v", r)
	}

	db, err := sqlitewasm.Open(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := bunstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok := newSession(t, s, core.OnInactivity(time.Hour), map[string]any{"user": "dave"})
	createRecord(t, s, time.Now().Add(-time.Hour), map[string]any{"old": true})

	r := sh(env, "inspect", tok.String())
	checkNoSecret(t, r, tok)
	if r.code != 0 || !strings.Contains(r.stdout, `"user": "dave"`) {
		t.Errorf("inspect: %+v", r)
	}
	r = sh(env, "stats", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"live": 1`) || !strings.Contains(r.stdout, `"expired": 1`) {
		t.Errorf("stats: %+v", r)
	}
	// stdout is a pipe here: plain lines, no terminal controls.
	r = sh(env, "purge")
	if r.code != 0 || r.stdout == "" || strings.Contains(r.stdout, "\x1b") || !strings.HasPrefix(r.stdout, "purged 1 expired sessions in ") {
		t.Errorf("purge: %+v", r)
	}
	r = sh(env, "revoke", tok.String())
	if r.code != 0 {
		t.Errorf("revoke: %+v", r)
	}
	r = sh(env, "revoke", tok.String())
	checkNoSecret(t, r, tok)
	if r.code != 1 || r.stdout != "" {
		t.Errorf("second revoke: %+v, want exit 1", r)
	}
	checkOneLineError(t, r)

	for _, args := range [][]string{{}, {"bogus"}, {"inspect"}, {"stats", "--nope"}} {
		r = sh(env, args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%v: %+v, want exit 2", args, r)
		}
		checkOneLineError(t, r)
	}
	// An unreachable MySQL server: bun's version probe must not log a
	// second line to stderr.
	r = sh(nil, "stats", "--database-url", "mysql://root@127.0.0.1:1/test?timeout=5s")
	if r.code != 1 {
		t.Errorf("unreachable MySQL: %+v, want exit 1", r)
	}
	checkOneLineError(t, r)
	if r = sh(nil, "-h"); r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: sessionctl") {
		t.Errorf("-h: %+v", r)
	}
}

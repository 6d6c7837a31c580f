package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
)

func TestUsageErrors(t *testing.T) {
	tok, err := core.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	sqlite := "sqlite://" + filepath.Join(t.TempDir(), "never-created.db")
	db := []string{"--database-url", sqlite}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // in stderr
	}{
		{"no command", nil, nil, "no command"},
		{"only flags", db, nil, "no command"},
		{"unknown command", append([]string{"frobnicate"}, db...), nil, `unknown command "frobnicate"`},
		{"unknown flag", []string{"stats", "--verbose"}, nil, "flag provided but not defined: -verbose"},
		{"flag without value", []string{"stats", "--database-url"}, nil, "flag needs an argument"},
		{"bad batch value", []string{"purge", "--batch", "many"}, nil, "invalid value"},
		{"zero batch", append([]string{"purge", "--batch", "0"}, db...), nil, "--batch must be at least 1"},
		{"batch on stats", append([]string{"stats", "--batch", "5"}, db...), nil, "--batch does not apply"},
		{"id on purge", append([]string{"purge", "--id", string(tok.ID())}, db...), nil, "--id does not apply"},
		{"inspect without token", append([]string{"inspect"}, db...), nil, "missing TOKEN"},
		{"revoke without token", append([]string{"revoke"}, db...), nil, "missing TOKEN"},
		{"inspect malformed token", append([]string{"inspect", "not-a-token"}, db...), nil, "not a session token"},
		{"revoke malformed token", append([]string{"revoke", tok.String() + "x"}, db...), nil, "not a session token"},
		{"token and id", append([]string{"inspect", tok.String(), "--id", string(tok.ID())}, db...), nil, "not both"},
		{"bad id", append([]string{"revoke", "--id", "short"}, db...), nil, "--id is not a session id"},
		{"extra argument", append([]string{"stats", "extra"}, db...), nil, "unexpected argument"},
		{"sessions without user", append([]string{"sessions"}, db...), nil, "missing --user"},
		{"user and token", append([]string{"revoke", tok.String(), "--user", "u"}, db...), nil, "not both"},
		{"user and id", append([]string{"revoke", "--id", string(tok.ID()), "--user", "u"}, db...), nil, "not both"},
		{"except without user", append([]string{"revoke", tok.String(), "--except", string(tok.ID())}, db...), nil, "--except applies to revoke --user"},
		{"bad except", append([]string{"revoke", "--user", "u", "--except", "short"}, db...), nil, "--except is not a session id"},
		{"user on inspect", append([]string{"inspect", "--user", "u"}, db...), nil, "does not apply"},
		{"empty user", append([]string{"sessions", "--user", ""}, db...), nil, "--user must be"},
		{"malformed token starting with a dash", append([]string{"revoke", "-" + tok.String()[1:] + "x"}, db...), nil, "not a session token"},
		{"two tokens", append([]string{"inspect", tok.String(), tok.String()}, db...), nil, "unexpected argument"},
		{"no database", []string{"stats"}, nil, "no database"},
		{"empty DATABASE_URL", []string{"stats"}, map[string]string{"DATABASE_URL": ""}, "no database"},
		{"unknown scheme", []string{"stats", "--database-url", "redis://u:secret@host/0"}, nil, `scheme "redis"`},
		{"no scheme", []string{"stats"}, map[string]string{"DATABASE_URL": "sessions.db"}, "no scheme"},
		{"schema on SQLite", append([]string{"stats", "--schema", "app"}, db...), nil, "SQLite has no schemas"},
		{"invalid table", append([]string{"stats", "--table", "x; DROP TABLE y"}, db...), nil, "invalid identifier"},
		{"invalid schema", []string{"stats", "--database-url", "postgres://u@127.0.0.1:1/db", "--schema", "a.b"}, nil, "invalid identifier"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, c.env, c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", r.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			checkOneLineError(t, r)
			checkNoSecret(t, r, tok)
			if strings.Contains(r.stderr, "secret") {
				t.Errorf("stderr shows the URL's password: %q", r.stderr)
			}
			if !strings.Contains(r.stderr, c.wantErr) {
				t.Errorf("stderr %q lacks %q", r.stderr, c.wantErr)
			}
		})
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(strings.TrimPrefix(sqlite, "sqlite://")), "*")); len(matches) != 0 {
		t.Errorf("usage errors created files: %v", matches)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"stats", "-h"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: sessionctl") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		for _, cmd := range []string{"migrate", "purge", "stats", "inspect TOKEN", "revoke TOKEN", "--database-url", "--json"} {
			if !strings.Contains(r.stdout, cmd) {
				t.Errorf("%v: usage lacks %q", args, cmd)
			}
		}
	}
}

// The database URL comes from DATABASE_URL unless --database-url is given;
// flags may come before or after the command.
func TestDatabaseURLFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	envDB := "sqlite://" + filepath.Join(dir, "env.db")
	flagDB := "sqlite:" + filepath.Join(dir, "flag.db")
	env := map[string]string{"DATABASE_URL": envDB}
	if r := runCLI(t, env, "migrate"); r.code != 0 {
		t.Fatalf("migrate from DATABASE_URL: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "--table", "other", "--database-url", flagDB, "migrate", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"table": "other"`) {
		t.Fatalf("migrate with --database-url: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{"env.db", "flag.db"} {
		if m, _ := filepath.Glob(filepath.Join(dir, f)); len(m) != 1 {
			t.Errorf("%s was not created", f)
		}
	}
	// Migrate again: idempotent.
	if r := runCLI(t, env, "migrate"); r.code != 0 {
		t.Errorf("second migrate: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A table that does not exist is a runtime error with a hint, not a usage
// error.
func TestMissingTable(t *testing.T) {
	for _, bo := range backends() {
		t.Run(bo.name, func(t *testing.T) {
			b := bo.open(t)
			tok, err := core.NewToken(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{{"stats"}, {"purge"}, {"inspect", tok.String()}, {"revoke", tok.String()}} {
				r := runCLI(t, nil, append(cmd, b.args...)...)
				if r.code != 1 || !strings.Contains(r.stderr, "sessionctl migrate") {
					t.Errorf("%s on a missing table: exit %d, stderr %q", cmd[0], r.code, r.stderr)
				}
				checkOneLineError(t, r)
				checkNoSecret(t, r, tok)
			}
		})
	}
}

// An unreachable server is a runtime error (exit 1), and the message does
// not show the password.
func TestUnreachableServer(t *testing.T) {
	for _, u := range []string{
		"postgres://user:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=5",
		"mysql://user:secret@127.0.0.1:1/db?timeout=5s",
	} {
		r := runCLI(t, nil, "stats", "--database-url", u)
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1; stderr %q", u, r.code, r.stderr)
		}
		checkOneLineError(t, r)
		if strings.Contains(r.stderr, "secret") {
			t.Errorf("stderr shows the password: %q", r.stderr)
		}
	}
}

// TestTokenStartingWithDash: one token in 64 begins
// with "-" (base64url's 62nd digit); it is a token, not a flag.
func TestTokenStartingWithDash(t *testing.T) {
	tok, err := core.NewToken(bytes.NewReader(append([]byte{0xF8}, bytes.Repeat([]byte{7}, 15)...)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.String(), "-") {
		t.Fatalf("token %q does not begin with a dash", tok)
	}
	sqlite := "sqlite://" + filepath.Join(t.TempDir(), "never-created.db")
	for _, cmd := range []string{"inspect", "revoke"} {
		r := runCLI(t, nil, cmd, tok.String(), "--database-url", sqlite)
		if r.code != 1 || strings.Contains(r.stderr, "flag") {
			t.Errorf("%s -TOKEN: exit %d, stderr %q; want the token taken as the argument (exit 1: no database file)", cmd, r.code, r.stderr)
		}
	}
}

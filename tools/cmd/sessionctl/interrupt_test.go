package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

// An interrupted purge (its context cancelled, as Ctrl-C does in main)
// exits 1 with one line saying how far it got.
func TestPurgeInterrupted(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "s.db")
	if r := runCLI(t, nil, "migrate", "--database-url", url); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	db, err := sqlitewasm.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := bunstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createRecord(t, s, time.Now().Add(-time.Hour), map[string]any{"k": 1})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"purge", "--database-url", url}, &out, &errb, func(string) string { return "" })
	r := result{code, out.String(), errb.String()}
	if r.code != 1 || !strings.Contains(r.stderr, "interrupted after deleting 0 expired sessions") {
		t.Errorf("got %+v", r)
	}
	checkOneLineError(t, r)
	if n := countRows(t, backend{db: db}, s); n != 1 {
		t.Errorf("%d rows left, want 1", n)
	}
}

package sqlitewasm_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/sqlsessions/sqlsessions/core"
)

// fileSize is the size of the file at path, 0 if there is none. It may be
// called from any goroutine.
func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		if !os.IsNotExist(err) {
			t.Error(err)
		}
		return 0
	}
	return st.Size()
}

// TestPurgeTruncatesOwnWAL: bunstore's checkpoint after a purge round works
// on any SQLite *bun.DB, here one opened with the driver directly (no
// sqlitewasm.Open, so SQLite's own automatic checkpoints): after the round
// the -wal file is empty, and the connection it ran on has its own
// busy_timeout back.
func TestPurgeTruncatesOwnWAL(t *testing.T) {
	if fileJournal != "wal" {
		t.Skip("this build has no WAL for file databases")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "own.db")
	sqldb, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(path)+"?_pragma=journal_mode(wal)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	sqldb.SetMaxOpenConns(1) // so the checkpoint's connection is the one checked below
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	store := newStore(t, db)

	cached, err := store.Codec().Marshal(make([]byte, 8<<10))
	if err != nil {
		t.Fatal(err)
	}
	value := map[string][]byte{"cached": cached}
	expired := time.Now().Add(-time.Minute)
	for range 600 {
		tok, err := core.NewToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Create(ctx, &core.Record{ID: tok.ID(), Data: value, Expiry: expired}); err != nil {
			t.Fatal(err)
		}
	}
	if wal := fileSize(t, path+"-wal"); wal < 1<<20 {
		t.Fatalf("-wal is %d bytes before the purge, want some: the test proves nothing", wal)
	}
	n, err := store.DeleteExpired(ctx, time.Now(), 0)
	if err != nil || n != 600 {
		t.Fatalf("DeleteExpired = %d, %v; want 600", n, err)
	}
	if wal := fileSize(t, path+"-wal"); wal != 0 {
		t.Errorf("-wal is %.1f MB after a purge round, want 0 (truncated)", float64(wal)/1e6)
	}
	var ms int
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if ms != 5000 {
		t.Errorf("busy_timeout = %d after the purge, want the DSN's 5000", ms)
	}
}

package sqlitewasm

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver" // embeds SQLite
	"github.com/ncruces/go-sqlite3/vfs"
)

// TestWALRestartOfCancelledCommit: a commit whose context has ended by the
// time the WAL limiter checkpoints cannot wait for anything (the driver's
// busy handler gives up at once), so its RESTART checkpoint fails at the
// first reader. That says nothing about the readers: it must not make the
// limiter back off as a RESTART that waited its 100 ms in vain does (the
// second commit here, whose context lives).
func TestWALRestartOfCancelledCommit(t *testing.T) {
	if !vfs.SupportsFileLocking || !vfs.SupportsSharedMemory {
		t.Skip("this build has no WAL for file databases")
	}
	uri := "file:" + filepath.ToSlash(filepath.Join(t.TempDir(), "hook.db")) +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=wal_autocheckpoint(10)"
	open := func() *sqlite3.Conn {
		c, err := sqlite3.Open(uri)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	writer, reader := open(), open()
	w := new(walLimiter)
	if err := w.install(writer); err != nil {
		t.Fatal(err)
	}
	if err := writer.Exec(`CREATE TABLE t (b BLOB); INSERT INTO t SELECT zeroblob(100000)`); err != nil {
		t.Fatal(err)
	}
	// The reader's snapshot keeps the log: no RESTART can finish now.
	if err := reader.Exec(`BEGIN; SELECT count(*) FROM t`); err != nil {
		t.Fatal(err)
	}
	defer reader.Exec(`ROLLBACK`)

	var cancel context.CancelFunc
	if err := writer.CreateFunction("cancel_now", 0, 0, func(ctx sqlite3.Context, _ ...sqlite3.Value) {
		cancel()
		ctx.ResultInt(1)
	}); err != nil {
		t.Fatal(err)
	}
	ctx, c := context.WithCancel(context.Background())
	cancel = c
	writer.SetInterrupt(ctx)
	// The statement ends its own context, then commits; the limiter runs
	// after the commit.
	if err := writer.Exec(`INSERT INTO t SELECT zeroblob(100000) WHERE cancel_now()`); err != nil {
		t.Fatal(err)
	}
	if got := w.failedAt; got != 0 {
		t.Errorf("after a commit whose context had ended: the limiter backs off (failed at %d frames), want no back-off", got)
	}

	writer.SetInterrupt(context.Background())
	if err := writer.Exec(`INSERT INTO t SELECT zeroblob(100000)`); err != nil {
		t.Fatal(err)
	}
	if w.failedAt == 0 {
		t.Error("a RESTART that waited for the reader in vain did not back off: the test proves nothing")
	}
}

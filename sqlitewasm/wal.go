package sqlitewasm

import (
	"fmt"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// DefaultJournalSizeLimit is the journal_size_limit (in bytes) Open sets on
// file databases unless the DSN or WithPragma sets one: once a checkpoint has
// rewound the write-ahead log, the next commit truncates a -wal file larger
// than this back to this size. SQLite's own default (-1) never truncates it,
// so one burst (a long-running reader, a huge transaction) would leave the
// file at its largest for the life of the database. Open's checkpoints keep
// the log near wal_autocheckpoint pages (1000 pages, about 4 MB with 4 KiB
// pages) plus the largest transaction, so the limit matters only after such
// a burst. Raise it with page_size or wal_autocheckpoint, or set it with
// _pragma=journal_size_limit(N) in the DSN.
const DefaultJournalSizeLimit = 16 << 20

// restartBusy bounds how long an automatic RESTART checkpoint waits for the
// write lock and for readers of the old log. Writers wait while it does, so
// it is short; one that cannot finish in time becomes a PASSIVE checkpoint.
const restartBusy = 100 * time.Millisecond

// walLimiter replaces SQLite's automatic checkpoint on the connections of one
// pool. SQLite's runs a PASSIVE checkpoint after each commit that leaves the
// log at wal_autocheckpoint frames or more. Under continuous writes that does
// not bound the log: a PASSIVE checkpoint never blocks, so writers keep
// adding frames while it copies, the log is rarely completely copied at the
// moment a writer begins, and only then does SQLite write the log again from
// its start; the -wal file grows for as long as the load lasts (figures in
// RELIABILITY.md). So the limiter makes that checkpoint a RESTART one: it
// holds writers off while it copies the last frames and waits for readers of
// the old log (each wait bounded by restartBusy), and the next writer starts
// the log over.
//
// A RESTART checkpoint that cannot finish in time (a long transaction holds
// the write lock, or a reader keeps the old log) is not tried again until the
// log has grown by wal_autocheckpoint more frames, then twice that, and so
// on, until the log is rewound: a reader that holds the log for long stalls
// writers a few times, not at every commit, and a passing obstacle costs
// little more log.
type walLimiter struct {
	mu       sync.Mutex
	failedAt int // frames in the log when a RESTART last could not finish; 0: none since the log was rewound
	gap      int // frames the log grows after failedAt before the next RESTART
}

// install puts the limiter on c, unless automatic checkpoints are off there
// (wal_autocheckpoint 0 or less: the application checkpoints itself).
func (w *walLimiter) install(c *sqlite3.Conn) error {
	pages, err := pragmaInt(c, "wal_autocheckpoint")
	if err != nil || pages <= 0 {
		return err
	}
	ms, err := pragmaInt(c, "busy_timeout")
	if err != nil {
		return err
	}
	busy := time.Duration(ms) * time.Millisecond
	// The WAL hook replaces SQLite's automatic checkpoint on c; the hook
	// keeps its threshold.
	c.WALHook(func(c *sqlite3.Conn, schema string, frames int) error {
		if frames >= pages {
			w.checkpoint(c, schema, frames, pages, busy)
		}
		// The commit has happened: a checkpoint that could not finish is
		// no error of the statement's, and a later commit tries again.
		return nil
	})
	return nil
}

// checkpoint runs the checkpoint after a commit that left frames in the log
// on c, whose busy_timeout is busy.
func (w *walLimiter) checkpoint(c *sqlite3.Conn, schema string, frames, pages int, busy time.Duration) {
	if !w.restartDue(frames) {
		c.WALCheckpoint(schema, sqlite3.CHECKPOINT_PASSIVE)
		return
	}
	if c.BusyTimeout(min(busy, restartBusy)) != nil {
		return
	}
	nLog, _, err := c.WALCheckpoint(schema, sqlite3.CHECKPOINT_RESTART)
	c.BusyTimeout(busy)
	// nLog is -1 when another connection holds the checkpoint lock: it is
	// checkpointing, so this is no failure to back off from. Nor is one
	// whose statement's context ended: the driver's busy handler then gave
	// up without waiting, which says nothing about writers or readers, and
	// the next commit tries again.
	if err != nil && nLog >= 0 && c.GetInterrupt().Err() == nil {
		w.failed(frames, pages)
	}
}

// restartDue reports whether a commit that left frames in the log should try
// a RESTART checkpoint.
func (w *walLimiter) restartDue(frames int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if frames < w.failedAt { // the log has been rewound since
		w.failedAt, w.gap = 0, 0
	}
	return w.failedAt == 0 || frames >= w.failedAt+w.gap
}

// failed records a RESTART checkpoint that could not finish at frames.
func (w *walLimiter) failed(frames, pages int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failedAt = frames
	w.gap = max(pages, 2*w.gap)
}

// pragmaInt reads an integer pragma on c.
func pragmaInt(c *sqlite3.Conn, name string) (int, error) {
	st, _, err := c.Prepare("PRAGMA " + name)
	if err != nil {
		return 0, fmt.Errorf("sqlitewasm: PRAGMA %s: %w", name, err)
	}
	defer st.Close()
	if !st.Step() {
		if err := st.Err(); err != nil {
			return 0, fmt.Errorf("sqlitewasm: PRAGMA %s: %w", name, err)
		}
		return 0, fmt.Errorf("sqlitewasm: PRAGMA %s: no value", name)
	}
	return st.ColumnInt(0), nil
}

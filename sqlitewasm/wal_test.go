package sqlitewasm_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

// walBound is the size the -wal file must stay under during the load of
// TestWALBoundedUnderLoad. Open's checkpoints rewind the log at
// wal_autocheckpoint (1000) pages, about 4 MB, plus what the commits during a
// checkpoint add; the bound leaves room for a slower machine. Before, the
// log grew for as long as the load lasted (figures in RELIABILITY.md).
const walBound = sqlitewasm.DefaultJournalSizeLimit

// walLoad is new-session load on a file database with the purge running.
type walLoad struct {
	clients    int           // goroutines creating sessions back to back
	duration   time.Duration // how long they run
	expiry     time.Duration // sessions' inactivity expiry
	purgeEvery time.Duration // period of the purge loop
	value      []byte        // stored in each session beside a counter, if not nil
}

// walResult is what a walLoad run saw.
type walResult struct {
	created  int64
	maxWAL   int64 // largest -wal size sampled during the load
	finalWAL int64 // -wal size after the load and one more purge round
	p99, max time.Duration
}

// roundStore counts the purge rounds core.DeleteExpiredEvery completes (a
// DeleteExpired call that removes fewer rows than asked ends one; bunstore
// checkpoints then).
type roundStore struct {
	*bunstore.Store
	rounds atomic.Int64
}

func (r *roundStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	n, err := r.Store.DeleteExpired(ctx, now, limit)
	if err == nil && n < int64(limit) {
		r.rounds.Add(1)
	}
	return n, err
}

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

// logWriter sends a logger's lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// run opens a fresh file database with Open's defaults, runs the load with
// the purge beside it (as bunstore's ContinuouslyDeleteExpired runs it),
// samples the -wal file's size, and after the load waits for one more
// complete purge round.
func (l walLoad) run(t *testing.T, progress bool) walResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wal.db")
	db := mustOpen(t, "sqlite://"+filepath.ToSlash(path))
	logger := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := bunstore.New(db, bunstore.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	purger := &roundStore{Store: store}
	purgeDone := make(chan struct{})
	go func() {
		defer close(purgeDone)
		core.DeleteExpiredEvery(ctx, purger, l.purgeEvery,
			core.CleanupOptions{Batch: bunstore.DefaultDeleteBatchSize, Logger: logger})
	}()
	defer func() { cancel(); <-purgeDone }()

	var res walResult
	loadDone := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, last := time.Now(), time.Now()
		for {
			select {
			case <-loadDone:
				return
			case <-tick.C:
			}
			size := fileSize(t, path+"-wal")
			res.maxWAL = max(res.maxWAL, size)
			if progress && time.Since(last) >= 5*time.Second {
				last = time.Now()
				t.Logf("%4.0fs: -wal %.1f MB (max %.1f MB), database %.1f MB, %d purge rounds",
					time.Since(start).Seconds(), float64(size)/1e6, float64(res.maxWAL)/1e6,
					float64(fileSize(t, path))/1e6, purger.rounds.Load())
			}
		}
	}()

	opts := &core.Options{Expiry: core.OnInactivity(l.expiry)}
	lat := make([][]time.Duration, l.clients)
	errs := make(chan error, l.clients)
	deadline := time.Now().Add(l.duration)
	var wg sync.WaitGroup
	for g := range l.clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				start := time.Now()
				s := core.NewSession(store, "", opts)
				err := s.Insert(ctx, "counter", 1)
				if err == nil && l.value != nil {
					err = s.Insert(ctx, "cached", l.value)
				}
				if err == nil {
					_, err = s.Commit(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("creating a session under load: %w", err)
					return
				}
				lat[g] = append(lat[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	close(loadDone)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// One more complete round after the load: it ends with the checkpoint.
	// The round in progress when the load ended may have checkpointed
	// before the last commits, so wait for the one after it.
	after := purger.rounds.Load() + 2
	wait := 4*l.purgeEvery + 5*time.Second
	for end := time.Now().Add(wait); purger.rounds.Load() < after; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no purge round completed within %v after the load", wait)
		}
	}
	res.finalWAL = fileSize(t, path+"-wal")

	// The checkpoints put each connection's own busy_timeout back.
	for i, c := range conns(t, db, fileConns) {
		if got := pragma(t, c, "busy_timeout"); got != "10000" {
			t.Errorf("conn %d after the load: busy_timeout = %s, want 10000", i, got)
		}
	}

	all := slices.Concat(lat...)
	slices.Sort(all)
	res.created = int64(len(all))
	if len(all) > 0 {
		res.p99, res.max = all[len(all)*99/100], all[len(all)-1]
	}
	return res
}

// TestWALBoundedUnderLoad: 32 goroutines create sessions (a counter and 8
// KiB of data) back to back for 4 s while expired ones are purged every
// second. Under such load SQLite's own PASSIVE checkpoints never rewind the
// write-ahead log (new frames arrive while they copy), so the -wal file grew
// for as long as the load lasted and never shrank. Open's checkpoints keep
// it under walBound, and the TRUNCATE checkpoint bunstore runs after a purge
// round empties it.
//
// SQLSESSIONS_WAL_SOAK=2m runs the load of examples/sqlite for that long
// (sessions holding only a counter, 10 s expiry) with a purge every 30 s,
// and logs the sizes every 5 s.
func TestWALBoundedUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("6 s of load: runs without -short")
	}
	if fileJournal != "wal" {
		t.Skip("this build has no WAL for file databases")
	}
	value := make([]byte, 8<<10)
	rand.Read(value)
	l := walLoad{clients: 32, duration: 4 * time.Second, expiry: time.Second, purgeEvery: time.Second, value: value}
	progress := false
	if s := os.Getenv("SQLSESSIONS_WAL_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SQLSESSIONS_WAL_SOAK=%q: %v", s, err)
		}
		l.duration, l.expiry, l.purgeEvery, l.value = d, 10*time.Second, 30*time.Second, nil
		progress = true
	}
	r := l.run(t, progress)
	t.Logf("%d sessions in %v (%.0f/s); -wal at most %.1f MB during the load, %d bytes after a purge round; commit p99 %v, max %v",
		r.created, l.duration, float64(r.created)/l.duration.Seconds(),
		float64(r.maxWAL)/1e6, r.finalWAL, r.p99, r.max)
	if r.maxWAL > walBound {
		t.Errorf("-wal reached %.1f MB during the load, want at most %.1f MB", float64(r.maxWAL)/1e6, float64(walBound)/1e6)
	}
	if r.finalWAL > 0 {
		t.Errorf("-wal is %d bytes after a purge round with no load, want 0 (truncated)", r.finalWAL)
	}
}

// TestWALLongReader: a reader that keeps an old snapshot open stops any
// checkpoint from rewinding the log (SQLite cannot help that). The RESTART
// checkpoints Open makes must then give up quickly and back off, not stall
// every commit: writing four times past the checkpoint threshold while the
// reader stays makes a few slow commits (at 1000, 2000 and 4000 frames).
func TestWALLongReader(t *testing.T) {
	if fileJournal != "wal" {
		t.Skip("this build has no WAL for file databases")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reader.db")
	db := mustOpen(t, "sqlite://"+filepath.ToSlash(path))
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	reader := conns(t, db, 1)[0]
	if _, err := reader.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		t.Fatal(err)
	}
	defer reader.ExecContext(ctx, `ROLLBACK`)
	var n int
	if err := reader.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}

	// 800 commits of 16 KiB each add about 4000 frames: the threshold
	// (1000) is crossed at a quarter, and every later commit checkpoints.
	blob := make([]byte, 16<<10)
	const slowCommit = 80 * time.Millisecond
	slow := 0
	start := time.Now()
	for range 800 {
		t0 := time.Now()
		if _, err := db.ExecContext(ctx, `INSERT INTO t (b) VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
		if time.Since(t0) >= slowCommit {
			slow++
		}
		if time.Since(start) > 5*time.Second {
			break // enough to tell, and a failing run stays short
		}
	}
	elapsed := time.Since(start)
	if wal := fileSize(t, path+"-wal"); wal < 12<<20 {
		t.Fatalf("-wal is %.1f MB: the reader did not hold the log, the test proves nothing", float64(wal)/1e6)
	}
	allowed := 4 + int(elapsed/time.Second) // and room for a slow machine
	t.Logf("commits for %v, %d took %v or more", elapsed, slow, slowCommit)
	if slow > allowed {
		t.Errorf("%d commits took %v or more in %v with a reader holding the log, want at most %d: checkpoints do not back off",
			slow, slowCommit, elapsed, allowed)
	}
}

// TestWALAutocheckpointOff: a DSN that turns automatic checkpoints off
// (wal_autocheckpoint 0, for an application that checkpoints itself) gets
// none from Open either.
func TestWALAutocheckpointOff(t *testing.T) {
	if fileJournal != "wal" {
		t.Skip("this build has no WAL for file databases")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "manual.db")
	db := mustOpen(t, "sqlite://"+filepath.ToSlash(path)+"?_pragma=wal_autocheckpoint(0)")
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 16<<10)
	for range 400 { // about 2000 frames, twice the usual threshold
		if _, err := db.ExecContext(ctx, `INSERT INTO t (b) VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
	}
	var busy, frames, done int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		t.Fatal(err)
	}
	if frames < 1500 {
		t.Errorf("the log holds %d frames, want the about 2000 written: a checkpoint rewound it", frames)
	}
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

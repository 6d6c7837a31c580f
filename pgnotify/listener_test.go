package pgnotify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/pgnotify"
)

func TestNewErrors(t *testing.T) {
	cache := core.NewCachingStore(core.NewMemoryStore(), core.CachingOptions{})
	if _, err := pgnotify.New("postgres://localhost/x", nil, pgnotify.Options{}); err == nil {
		t.Error("New accepted a nil cache")
	}
	if _, err := pgnotify.New("postgres://localhost:notaport/x", cache, pgnotify.Options{}); err == nil {
		t.Error("New accepted a malformed DSN")
	}
	if _, err := pgnotify.New("postgres://localhost/x", cache, pgnotify.Options{Table: "a-b"}); err == nil {
		t.Error("New accepted an invalid table name")
	}
	// A backend without names: the defaults.
	l, err := pgnotify.New("postgres://localhost/x", cache, pgnotify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := pgnotify.Channel("tower_sessions", "session"); l.Channel() != want {
		t.Errorf("Channel %q, want %q", l.Channel(), want)
	}
	// A backend with names but no schema is not a PostgreSQL store.
	sqlite := core.NewCachingStore(namedStore{core.NewMemoryStore()}, core.CachingOptions{})
	if _, err := pgnotify.New("postgres://localhost/x", sqlite, pgnotify.Options{}); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Errorf("New for a store without a schema: %v", err)
	}
	if l, err := pgnotify.New("postgres://localhost/x", sqlite, pgnotify.Options{Schema: "s"}); err != nil || l.Channel() != pgnotify.Channel("s", "tower_sessions") {
		t.Errorf("New with an explicit schema: %v", err)
	}
}

// namedStore reports names as bunstore's SQLite store does.
type namedStore struct{ *core.MemoryStore }

func (namedStore) SchemaName() string { return "" }
func (namedStore) TableName() string  { return "tower_sessions" }

// feed is a cache over a counting backend, with a listener and a clock the
// test moves.
type feed struct {
	backend  *countingStore
	cache    *core.CachingStore
	listener *pgnotify.Listener
	clock    *fakeClock
	appName  string
}

const (
	testTTL     = time.Second
	testFeedTTL = time.Hour
)

func newFeed(t *testing.T, d *testDB, opts pgnotify.Options) *feed {
	t.Helper()
	f := &feed{backend: &countingStore{Store: d.store}, clock: newFakeClock()}
	f.cache = core.NewCachingStore(f.backend, core.CachingOptions{TTL: testTTL, FeedTTL: testFeedTTL, Now: f.clock.Now})
	dsn, name := withAppName(t, d.url)
	f.appName = name
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	l, err := pgnotify.New(dsn, f.cache, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.listener = l
	return f
}

// load loads id through the cache and reports whether the backend was
// asked.
func (f *feed) load(t *testing.T, id core.ID) (*core.Record, bool) {
	t.Helper()
	before := f.backend.loads.Load()
	rec, err := f.cache.Load(context.Background(), id, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rec, f.backend.loads.Load() != before
}

// trustsFeed reports whether the cache serves an entry older than its TTL,
// as it does only while the feed is up. It leaves the clock advanced.
func (f *feed) trustsFeed(t *testing.T, id core.ID) bool {
	t.Helper()
	f.load(t, id)
	if _, miss := f.load(t, id); miss {
		t.Fatal("a second load at the same instant missed the cache")
	}
	f.clock.Advance(2 * testTTL)
	_, miss := f.load(t, id)
	return !miss
}

// TestListener follows a listener through its life: it evicts what another
// store changes, falls back to the TTL the moment its connection dies,
// reconnects, and leaves the TTL in force when stopped.
func TestListener(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{})
	other := d.otherStore(t)
	ctx := context.Background()
	rec := newRecord(t, other, "alice")

	if f.trustsFeed(t, rec.ID) {
		t.Fatal("the cache trusts a feed before the listener runs")
	}
	stop := run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	if !f.trustsFeed(t, rec.ID) {
		t.Error("the cache applies its TTL while the listener listens")
	}

	// A save elsewhere evicts the entry: the next load sees it.
	rec.Data["k"] = []byte{9}
	if err := other.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 2*time.Second, "the save to reach the cache", func() bool {
		got, _ := f.load(t, rec.ID)
		return got != nil && got.Version == rec.Version
	})
	t.Logf("a save made elsewhere was seen after %v", took)
	// A delete elsewhere: the session is refused.
	if err := other.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, 2*time.Second, "the delete to reach the cache", func() bool {
		got, _ := f.load(t, rec.ID)
		return got == nil
	})
	t.Logf("a delete made elsewhere was seen after %v", took)
	if took > 200*time.Millisecond {
		t.Errorf("a delete elsewhere took %v to reach the cache, want < 200 ms", took)
	}

	// The connection dies: the TTL applies at once.
	rec = newRecord(t, other, "alice")
	f.load(t, rec.ID)
	if n := terminate(t, d.admin(), f.appName); n != 1 {
		t.Fatalf("terminated %d backends named %s, want the listener's", n, f.appName)
	}
	took = waitFor(t, 2*time.Second, "the listener to notice", func() bool { return !f.listener.Listening() })
	t.Logf("the listener noticed its connection's end after %v", took)
	if f.trustsFeed(t, rec.ID) {
		t.Error("the cache trusts the feed after the listener's connection ended")
	}
	// It reconnects (after at least 80 ms of backoff), and empties the
	// cache on the way up.
	stillDown := !f.listener.Listening()
	f.load(t, rec.ID)
	took = waitFor(t, 10*time.Second, "the listener to reconnect", f.listener.Listening)
	t.Logf("reconnected after %v", took)
	if _, miss := f.load(t, rec.ID); stillDown && !miss {
		t.Error("an entry cached while the feed was down survived its return")
	}
	if !f.trustsFeed(t, rec.ID) {
		t.Error("the cache does not trust the feed after the reconnection")
	}
	if err := other.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 200*time.Millisecond, "a delete after the reconnection to reach the cache", func() bool {
		got, _ := f.load(t, rec.ID)
		return got == nil
	})

	// Stopped: the TTL applies.
	rec = newRecord(t, other, "alice")
	if err := stop(); err != context.Canceled {
		t.Errorf("Run returned %v", err)
	}
	if f.listener.Listening() || f.trustsFeed(t, rec.ID) {
		t.Error("the feed is trusted after Run returned")
	}
}

// TestListenerUserRevocation: DeleteUserSessions through another store's
// cache evicts every session of the user here.
func TestListenerUserRevocation(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	revokeAndCheck(t, f, core.NewCachingStore(d.otherStore(t), core.CachingOptions{}))
}

// revokeAndCheck creates two sessions of carol's and one of dave's through
// other, caches them in f, revokes carol's through other, and checks that
// the revocation reaches f's cache within 200 ms and leaves dave's cached.
func revokeAndCheck(t *testing.T, f *feed, other *core.CachingStore) {
	t.Helper()
	a, b, keep := newRecord(t, other, "carol"), newRecord(t, other, "carol"), newRecord(t, other, "dave")
	for _, r := range []*core.Record{a, b, keep} {
		f.load(t, r.ID)
	}
	if n, err := other.DeleteUserSessions(context.Background(), "carol", ""); err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions: %d, %v", n, err)
	}
	waitFor(t, 200*time.Millisecond, "the revocation to reach the cache", func() bool {
		ra, _ := f.load(t, a.ID)
		rb, _ := f.load(t, b.ID)
		return ra == nil && rb == nil
	})
	if r, miss := f.load(t, keep.ID); r == nil || miss {
		t.Errorf("another user's session: %v, reloaded %v; want it still cached", r, miss)
	}
}

// TestListenerTriggerRemoved: a listener whose triggers disappear or are
// disabled reports the feed down at its next health check and stays down
// until they are back.
func TestListenerTriggerRemoved(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{HealthInterval: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	ctx := context.Background()
	c := d.admin()
	table := pgx.Identifier{d.schema, "session"}.Sanitize()
	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" DISABLE TRIGGER sqlsessions_notify_v1_update"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to see the disabled trigger", func() bool { return !f.listener.Listening() })
	time.Sleep(200 * time.Millisecond) // several reconnection attempts
	if f.listener.Listening() {
		t.Error("the feed is up again while a trigger is disabled")
	}
	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" ENABLE TRIGGER sqlsessions_notify_v1_update"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to return", f.listener.Listening)
	// Dropped: the listener reinstalls it.
	if _, err := c.Exec(ctx, "DROP TRIGGER sqlsessions_notify_v1_delete ON "+table); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to see the dropped trigger", func() bool { return !f.listener.Listening() })
	waitFor(t, 2*time.Second, "the listener to reinstall it", f.listener.Listening)
	if tr, _ := countTriggers(t, c, d.schema, "session"); tr != 3 {
		t.Errorf("%d triggers after the listener reinstalled them", tr)
	}
}

// TestListenerSkipInstall: with SkipInstall the listener does not create
// the triggers, and waits for them without reporting the feed up.
func TestListenerSkipInstall(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{SkipInstall: true, MaxBackoff: 50 * time.Millisecond})
	run(t, f.listener)
	time.Sleep(300 * time.Millisecond)
	if f.listener.Listening() {
		t.Fatal("the feed is up with no triggers installed")
	}
	if tr, _ := countTriggers(t, d.admin(), d.schema, "session"); tr != 0 {
		t.Fatalf("SkipInstall: %d triggers were installed", tr)
	}
	if err := pgnotify.Install(context.Background(), d.admin(), d.schema, "session"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to find the triggers", f.listener.Listening)
}

func TestRunTwice(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	if err := f.listener.Run(context.Background()); err == nil || err == context.Canceled {
		t.Errorf("a second Run: %v, want an error", err)
	}
	if !f.listener.Listening() {
		t.Error("a refused second Run took the feed down")
	}
}

// TestListenerSilentPartition: a connection that stops answering without
// closing (a network partition) is noticed by the health check within two
// HealthIntervals, and the feed returns when the network does.
func TestListenerSilentPartition(t *testing.T) {
	d := newTestDB(t)
	px := newProxy(t, d.url)
	d.url = px.dsn
	// Long enough that a busy machine's scheduling delays (CI runs
	// packages in parallel, under -race) stay small beside it.
	const interval = time.Second
	f := newFeed(t, d, pgnotify.Options{HealthInterval: interval, MaxBackoff: 100 * time.Millisecond})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	px.stall(true)
	took := waitFor(t, 2*interval+2*time.Second, "the listener to notice the partition", func() bool { return !f.listener.Listening() })
	t.Logf("a silent partition was noticed after %v (HealthInterval %v)", took, interval)
	if took > 2*interval+time.Second {
		t.Errorf("noticed after %v, want within two HealthIntervals (%v)", took, 2*interval)
	}
	px.stall(false)
	waitFor(t, 15*time.Second, "the listener to return after the partition", f.listener.Listening)
}

// TestOwnWritesComeBack pins a cost of the feed: a process's own save comes
// back as a notification and evicts the entry the save cached, so the next
// load of that session asks the database. (The payload carries no version
// the cache could compare with.)
func TestOwnWritesComeBack(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	rec := newRecord(t, f.cache, "")
	rec.Data["k"] = []byte{7}
	if err := f.cache.Save(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 2*time.Second, "the own save's notification to evict the entry", func() bool {
		_, miss := f.load(t, rec.ID)
		return miss
	})
	t.Logf("the process's own save evicted its entry after %v", took)
	// Without a write, the reloaded entry stays: the miss was the
	// notification's doing.
	time.Sleep(50 * time.Millisecond)
	if _, miss := f.load(t, rec.ID); miss {
		t.Error("an entry with no write since was not served from the cache")
	}
}

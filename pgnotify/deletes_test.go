package pgnotify_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/pgnotify"
)

// TestInstallDeletes: InstallDeletes creates the DELETE and TRUNCATE
// triggers and their function only; a later Install adds the UPDATE
// trigger, which InstallDeletes then leaves alone (another process may
// need it); Uninstall removes everything.
func TestInstallDeletes(t *testing.T) {
	d := newTestDB(t)
	c := d.admin()
	ctx := context.Background()
	table := d.store.TableName()
	for _, step := range []struct {
		name                string
		run                 func(context.Context, *pgx.Conn, string, string) error
		triggers, functions int
	}{
		{"InstallDeletes", pgnotify.InstallDeletes, 2, 1},
		{"InstallDeletes again", pgnotify.InstallDeletes, 2, 1},
		{"Install after InstallDeletes", pgnotify.Install, 3, 2},
		{"InstallDeletes after Install", pgnotify.InstallDeletes, 3, 2},
		{"Uninstall", pgnotify.Uninstall, 0, 0},
	} {
		if err := step.run(ctx, c, d.schema, table); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if tr, fn := countTriggers(t, c, d.schema, table); tr != step.triggers || fn != step.functions {
			t.Errorf("%s: %d triggers and %d functions, want %d and %d", step.name, tr, fn, step.triggers, step.functions)
		}
	}
}

// TestListenerDeletesOnly: a listener with Options.DeletesOnly installs no
// UPDATE trigger, reports the feed up with the other two, leaves the cache
// its TTL, and makes a delete, a revocation or a CycleID made by another
// process reach the cache within 200 ms, while a save made there reaches
// it within the TTL, as without a feed.
func TestListenerDeletesOnly(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{DeletesOnly: true})
	other := core.NewCachingStore(d.otherStore(t), core.CachingOptions{})
	ctx := context.Background()
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	if tr, fn := countTriggers(t, d.admin(), d.schema, d.store.TableName()); tr != 2 || fn != 1 {
		t.Errorf("the listener installed %d triggers and %d functions, want the DELETE and TRUNCATE ones and theirs (2 and 1)", tr, fn)
	}

	rec := newRecord(t, other, "alice")
	if f.trustsFeed(t, rec.ID) {
		t.Error("the cache serves an entry beyond its TTL while a feed of deletions is up")
	}

	// A save elsewhere notifies nobody: the cached record stays until the
	// TTL has passed.
	cached, _ := f.load(t, rec.ID)
	rec.Data["k"] = []byte{9}
	if err := other.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, miss := f.load(t, rec.ID); miss || got == nil || got.Version != cached.Version {
		t.Errorf("after a save elsewhere and 300 ms: %+v (reloaded %v), want the cached version %d still served", got, miss, cached.Version)
	}
	f.clock.Advance(2 * testTTL)
	if got, _ := f.load(t, rec.ID); got == nil || got.Version != rec.Version {
		t.Errorf("after the TTL: %+v, want version %d", got, rec.Version)
	}

	// A delete elsewhere reaches the cache at once.
	f.load(t, rec.ID)
	if err := other.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 2*time.Second, "the delete to reach the cache", func() bool {
		got, _ := f.load(t, rec.ID)
		return got == nil
	})
	t.Logf("a delete made elsewhere was seen after %v", took)
	if took > 200*time.Millisecond {
		t.Errorf("a delete elsewhere took %v to reach the cache, want < 200 ms", took)
	}

	// So does a revocation of a user's sessions, and the old id of a
	// session whose id another process cycled.
	revokeAndCheck(t, f, other)
	tok := sessionWithCookie(t, other)
	f.load(t, tok.ID())
	s := core.NewSession(other, tok.String(), nil)
	if err := s.CycleID(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 200*time.Millisecond, "the cycled id to reach the cache", func() bool {
		got, _ := f.load(t, tok.ID())
		return got == nil
	})
}

// sessionWithCookie creates a session through s with core's Session, as
// the middleware does, and returns its token.
func sessionWithCookie(t *testing.T, s core.Store) core.Token {
	t.Helper()
	ctx := context.Background()
	sess := core.NewSession(s, "", nil)
	if err := sess.Insert(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return sess.Token()
}

// TestListenerDeletesOnlyHealth: with DeletesOnly and SkipInstall the feed
// comes up once InstallDeletes has run (no UPDATE trigger needed), goes
// down when the DELETE trigger is disabled, and comes back when it is
// enabled again.
func TestListenerDeletesOnlyHealth(t *testing.T) {
	d := newTestDB(t)
	f := newFeed(t, d, pgnotify.Options{DeletesOnly: true, SkipInstall: true, HealthInterval: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	run(t, f.listener)
	time.Sleep(300 * time.Millisecond)
	if f.listener.Listening() {
		t.Fatal("the feed is up with no triggers installed")
	}
	ctx := context.Background()
	c := d.admin()
	if err := pgnotify.InstallDeletes(ctx, c, d.schema, d.store.TableName()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to find the triggers", f.listener.Listening)
	table := pgx.Identifier{d.schema, d.store.TableName()}.Sanitize()
	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" DISABLE TRIGGER sqlsessions_notify_v1_delete"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to see the disabled trigger", func() bool { return !f.listener.Listening() })
	if _, err := c.Exec(ctx, "ALTER TABLE "+table+" ENABLE TRIGGER sqlsessions_notify_v1_delete"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to return", f.listener.Listening)
}

// TestListenerDeletesOnlySwitch: a table moved from the whole feed to
// deletions only, as docs/many-instances.md says: with the whole feed's
// triggers in place, a deletions-only listener leaves the UPDATE trigger
// alone; Uninstall takes the feed down, the listener reinstalls its two
// triggers at its next health check, and deletions reach the cache again.
func TestListenerDeletesOnlySwitch(t *testing.T) {
	d := newTestDB(t)
	ctx := context.Background()
	c := d.admin()
	table := d.store.TableName()
	if err := pgnotify.Install(ctx, c, d.schema, table); err != nil {
		t.Fatal(err)
	}
	f := newFeed(t, d, pgnotify.Options{DeletesOnly: true, HealthInterval: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	run(t, f.listener)
	waitFor(t, 10*time.Second, "the listener to listen", f.listener.Listening)
	if tr, _ := countTriggers(t, c, d.schema, table); tr != 3 {
		t.Errorf("%d triggers with the whole feed installed before, want its 3 left in place", tr)
	}
	if err := pgnotify.Uninstall(ctx, c, d.schema, table); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the listener to see the triggers gone", func() bool { return !f.listener.Listening() })
	waitFor(t, 2*time.Second, "the listener to reinstall its triggers", f.listener.Listening)
	if tr, fn := countTriggers(t, c, d.schema, table); tr != 2 || fn != 1 {
		t.Errorf("%d triggers and %d functions after the switch, want 2 and 1", tr, fn)
	}
	other := d.otherStore(t)
	rec := newRecord(t, other, "erin")
	f.load(t, rec.ID)
	if err := other.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 200*time.Millisecond, "a delete after the switch to reach the cache", func() bool {
		got, _ := f.load(t, rec.ID)
		return got == nil
	})
}

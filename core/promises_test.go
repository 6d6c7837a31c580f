package core_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// Every method of a nil *Session (what a handler gets outside the
// middleware) reports ErrNoSession instead of crashing.
func TestNilSessionNamesTheMissingMiddleware(t *testing.T) {
	ctx := context.Background()
	var s *core.Session
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k", new(int))
	_, _, checks["Get[T]"] = core.Get[int](ctx, s, "k")
	checks["Insert"] = s.Insert(ctx, "k", 1)
	_, checks["Update"] = core.Update(ctx, s, "k", func(n int, _ bool) (int, error) { return n + 1, nil })
	_, checks["Remove"] = s.Remove(ctx, "k")
	_, checks["Pop"] = s.Pop(ctx, "k", new(int))
	checks["Clear"] = s.Clear(ctx)
	checks["Load"] = s.Load(ctx)
	checks["Flush"] = s.Flush(ctx)
	checks["Delete"] = s.Delete(ctx)
	checks["CycleID"] = s.CycleID(ctx)
	_, checks["Keys"] = s.Keys(ctx)
	_, checks["IsEmpty"] = s.IsEmpty(ctx)
	checks["SetUser"] = s.SetUser(ctx, "u")
	_, checks["User"] = s.User(ctx)
	_, checks["Created"] = s.Created(ctx)
	_, checks["Commit"] = s.Commit(ctx)
	for name, err := range checks {
		if !errors.Is(err, core.ErrNoSession) || !strings.Contains(err.Error(), "middleware") {
			t.Errorf("%s on a nil session = %v; want ErrNoSession naming the middleware", name, err)
		}
	}
	s.SetExpiry(core.OnInactivity(time.Minute))
	s.ResetExpiry()
	if s.ID() != "" || !s.Token().IsZero() || s.Modified() || s.ExpiryAge() != 0 || !s.ExpiresAt().IsZero() {
		t.Error("a nil session reports state")
	}
	if _, ok := s.MaxAge(time.Now()); ok {
		t.Error("a nil session has a Max-Age")
	}
}

func TestJSONRefusesInvalidUTF8(t *testing.T) {
	ctx := context.Background()
	sess := core.NewSession(core.NewMemoryStore(), "", nil)
	for name, insert := range map[string]func() error{
		"key":        func() error { return sess.Insert(ctx, "a\xffb", 1) },
		"value":      func() error { return sess.Insert(ctx, "k", "x\xfe") },
		"nested key": func() error { return sess.Insert(ctx, "k", map[string]int{"\xc3": 1}) },
		"in a slice": func() error { return sess.Insert(ctx, "k", []string{"ok", "\xff"}) },
		"update": func() error {
			_, err := core.Update(ctx, sess, "k", func(string, bool) (string, error) { return "\xff", nil })
			return err
		},
		"update key": func() error {
			_, err := core.Update(ctx, sess, "\xff", func(int, bool) (int, error) { return 1, nil })
			return err
		},
		"raw message": func() error { return sess.Insert(ctx, "k", rawJSON("\"\xff\"")) },
	} {
		if err := insert(); !errors.Is(err, core.ErrInvalidUTF8) {
			t.Errorf("%s: Insert = %v; want ErrInvalidUTF8", name, err)
		}
	}
	if keys, _ := sess.Keys(ctx); len(keys) != 0 {
		t.Fatalf("refused values were stored: %v", keys)
	}
	// Valid text, a real U+FFFD and escaped backslashes round-trip.
	for _, v := range []string{"héllo", "\ufffd", `\ufffd`, `\\ufffd`, "a\\"} {
		if err := sess.Insert(ctx, "k", v); err != nil {
			t.Fatalf("Insert(%q) = %v", v, err)
		}
		if got, _, err := core.Get[string](ctx, sess, "k"); err != nil || got != v {
			t.Fatalf("Get = %q, %v; want %q", got, err, v)
		}
	}
	if _, err := core.JSON.EncodeMap(map[string][]byte{"\xff": []byte("1")}); !errors.Is(err, core.ErrInvalidUTF8) {
		t.Fatalf("EncodeMap with an invalid key = %v", err)
	}
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestSizeLimit(t *testing.T) {
	ctx := context.Background()
	store := core.NewMemoryStore()
	opts := &core.Options{MaxRecordSize: 100}
	sess := core.NewSession(store, "", opts)
	if err := sess.Insert(ctx, "a", strings.Repeat("x", 40)); err != nil { // 1 + 42 bytes
		t.Fatal(err)
	}
	err := sess.Insert(ctx, "b", strings.Repeat("x", 60))
	var tooLarge *core.RecordTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Key != "b" || tooLarge.Limit != 100 || tooLarge.Size != 43+63 {
		t.Fatalf("Insert over the limit = %#v", err)
	}
	if _, err := core.Update(ctx, sess, "a", func(s string, _ bool) (string, error) { return s + strings.Repeat("y", 80), nil }); !errors.Is(err, core.ErrRecordTooLarge) {
		t.Fatalf("Update over the limit = %v", err)
	}
	commit(t, ctx, sess, core.Saved)
	token := sess.Token().String()

	// A concurrent request fills the session; this one's change fitted when
	// it was made but not once merged: Commit refuses it, nothing is lost.
	late := core.NewSession(store, token, opts)
	if err := late.Insert(ctx, "c", strings.Repeat("z", 40)); err != nil {
		t.Fatal(err)
	}
	other := core.NewSession(store, token, opts)
	if err := other.Insert(ctx, "d", strings.Repeat("w", 40)); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, other, core.Saved)
	if _, err := late.Commit(ctx); !errors.Is(err, core.ErrRecordTooLarge) {
		t.Fatalf("Commit over the limit after a merge = %v", err)
	}
	keys, _ := core.NewSession(store, token, opts).Keys(ctx)
	if strings.Join(keys, ",") != "a,d" {
		t.Fatalf("keys = %v, want a,d", keys)
	}

	// Under a lowered limit an oversized session can still shrink.
	small := &core.Options{MaxRecordSize: 10}
	shrink := core.NewSession(store, token, small)
	if _, err := shrink.Remove(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := shrink.Insert(ctx, "a", "x"); err != nil {
		t.Fatalf("a shrinking change was refused: %v", err)
	}
	if err := core.NewSession(store, "", &core.Options{MaxRecordSize: -1}).Insert(ctx, "huge", strings.Repeat("x", 2*core.DefaultMaxRecordSize)); err != nil {
		t.Fatalf("a negative limit still limits: %v", err)
	}
}

// offsetStore shows its backend's versions shifted up by offset, so a test
// can hold a record at a version near the limit.
type offsetStore struct {
	*core.MemoryStore
	offset uint64
	takes  atomic.Int32
}

func (o *offsetStore) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	rec, err := o.MemoryStore.Load(ctx, id, now)
	if rec != nil {
		rec.Version += o.offset
	}
	return rec, err
}

func (o *offsetStore) Save(ctx context.Context, rec *core.Record) error {
	if rec.Version+1 > core.MaxVersion {
		return errors.New("version out of range") // what a SQL store would say
	}
	rec.Version -= o.offset
	err := o.MemoryStore.Save(ctx, rec)
	rec.Version += o.offset
	return err
}

func (o *offsetStore) Take(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	o.takes.Add(1)
	rec, err := o.MemoryStore.Take(ctx, id, now)
	if rec != nil {
		rec.Version += o.offset
	}
	return rec, err
}

func TestVersionAtTheLimitMovesToANewID(t *testing.T) {
	ctx := context.Background()
	st := &offsetStore{MemoryStore: core.NewMemoryStore(), offset: core.MaxVersion - 2}
	token := seeded(t, st, "k", "v")
	sess := core.NewSession(st, token, nil)
	if err := sess.Insert(ctx, "k2", "v2"); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, sess, core.Saved) // the store now holds core.MaxVersion
	if sess.Token().String() != token {
		t.Fatal("a save below the limit changed the token")
	}
	again := core.NewSession(st, token, nil)
	if err := again.Insert(ctx, "k3", "v3"); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, again, core.Saved)
	if again.Token().String() == token || st.takes.Load() != 1 {
		t.Fatalf("a save at the version limit kept its id (takes: %d)", st.takes.Load())
	}
	keys, err := core.NewSession(st, again.Token().String(), nil).Keys(ctx)
	if err != nil || strings.Join(keys, ",") != "k,k2,k3" {
		t.Fatalf("keys under the new id = %v, %v", keys, err)
	}
	if ok, _ := core.NewSession(st, token, nil).Get(ctx, "k", new(string)); ok {
		t.Fatal("the old id still loads")
	}
}

func TestUpdateReplaysOnConflict(t *testing.T) {
	ctx := context.Background()
	store := core.NewMemoryStore()
	token := seeded(t, store, "n", 10)
	a := core.NewSession(store, token, nil)
	runs := 0
	got, err := core.Update(ctx, a, "n", func(n int, found bool) (int, error) {
		runs++
		if !found {
			t.Error("existing key reported absent")
		}
		return n * 2, nil
	})
	if err != nil || got != 20 {
		t.Fatalf("Update = %d, %v", got, err)
	}
	b := core.NewSession(store, token, nil)
	if err := b.Insert(ctx, "n", 7); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, b, core.Saved)
	commit(t, ctx, a, core.Saved)
	if runs != 2 {
		t.Fatalf("update function ran %d times, want 2", runs)
	}
	if n, _, _ := core.Get[int](ctx, core.NewSession(store, token, nil), "n"); n != 14 {
		t.Fatalf("n = %d, want 14 (7 doubled)", n)
	}

	// A function that fails when it runs again fails Commit; nothing is
	// written.
	c := core.NewSession(store, token, nil)
	fail := errors.New("cart full")
	calls := 0
	if _, err := core.Update(ctx, c, "n", func(n int, _ bool) (int, error) {
		calls++
		if calls > 1 {
			return 0, fail
		}
		return n + 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	d := core.NewSession(store, token, nil)
	if err := d.Insert(ctx, "n", 100); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, d, core.Saved)
	if _, err := c.Commit(ctx); !errors.Is(err, fail) {
		t.Fatalf("Commit = %v, want the function's error", err)
	}
	if n, _, _ := core.Get[int](ctx, core.NewSession(store, token, nil), "n"); n != 100 {
		t.Fatalf("n = %d after a failed replay, want 100", n)
	}

	// Insert after Update replaces it; Update after Insert builds on it.
	e := core.NewSession(store, token, nil)
	if _, err := core.Update(ctx, e, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.Insert(ctx, "n", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Update(ctx, e, "n", func(n int, _ bool) (int, error) { return n * 3, nil }); err != nil {
		t.Fatal(err)
	}
	f := core.NewSession(store, token, nil)
	if err := f.Insert(ctx, "n", 1000); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, f, core.Saved)
	commit(t, ctx, e, core.Saved)
	if n, _, _ := core.Get[int](ctx, core.NewSession(store, token, nil), "n"); n != 15 {
		t.Fatalf("n = %d, want 15 (5, tripled)", n)
	}
}

func TestUpdateOfAnUndecodableValue(t *testing.T) {
	ctx := context.Background()
	store := core.NewMemoryStore()
	token := seeded(t, store, "n", "not a number")
	sess := core.NewSession(store, token, nil)
	if _, err := core.Update(ctx, sess, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err == nil {
		t.Fatal("Update decoded a string into an int")
	}
	commit(t, ctx, sess, core.Unchanged)
}

func TestParityWithTowerSessions(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	opts := &core.Options{Expiry: core.OnInactivity(time.Hour), Now: func() time.Time { return clock }}
	token := func() string {
		s := core.NewSession(st, "", opts)
		if err := s.Insert(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		commit(t, ctx, s, core.Saved)
		return s.Token().String()
	}()

	// Load reads the record once, on demand.
	st.reset()
	sess := core.NewSession(st, token, opts)
	if err := sess.Load(ctx); err != nil || st.loads.Load() != 1 {
		t.Fatalf("Load = %v after %d loads", err, st.loads.Load())
	}
	if err := sess.Load(ctx); err != nil || st.loads.Load() != 1 {
		t.Fatalf("a second Load read again (%d loads)", st.loads.Load())
	}

	// ExpiryAge is the time left; SetExpiry and ResetExpiry.
	if age := sess.ExpiryAge(); age != time.Hour {
		t.Fatalf("ExpiryAge = %v, want 1h", age)
	}
	sess.SetExpiry(core.AtDateTime(clock.Add(5 * time.Minute)))
	if age := sess.ExpiryAge(); age != 5*time.Minute {
		t.Fatalf("ExpiryAge after SetExpiry = %v", age)
	}
	sess.ResetExpiry()
	if sess.Expiry() != opts.Expiry || sess.ExpiryAge() != time.Hour || !sess.Modified() {
		t.Fatalf("ResetExpiry: %v, %v, modified %v", sess.Expiry(), sess.ExpiryAge(), sess.Modified())
	}
	sess.SetExpiry(core.AtDateTime(clock.Add(-time.Minute)))
	if age := sess.ExpiryAge(); age != 0 {
		t.Fatalf("ExpiryAge of a passed deadline = %v, want 0", age)
	}

	// Delete removes the record but keeps the data for this request; a
	// change saves it under a new id.
	del := core.NewSession(st, token, opts)
	if err := del.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := core.Get[string](ctx, del, "k"); err != nil || !ok || v != "v" {
		t.Fatalf("data after Delete = %q, %v, %v", v, ok, err)
	}
	if ok, _ := core.NewSession(st, token, opts).Get(ctx, "k", new(string)); ok {
		t.Fatal("the record survived Delete")
	}
	if err := del.Insert(ctx, "k2", "v2"); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, del, core.Saved)
	if del.Token().String() == token {
		t.Fatal("Delete then change reused the deleted id")
	}
	keys, _ := core.NewSession(st, del.Token().String(), opts).Keys(ctx)
	if strings.Join(keys, ",") != "k,k2" {
		t.Fatalf("keys = %v", keys)
	}
	gone := core.NewSession(st, del.Token().String(), opts)
	if err := gone.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, gone, core.Removed)
}

func TestExpiryClamped(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range []core.Expiry{
		core.AtDateTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
		core.AtDateTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)),
		core.OnInactivity(time.Duration(1<<63 - 1)),
	} {
		d := e.Deadline(now, 0)
		if d.After(core.MaxDeadline) || d.Year() < 2300 {
			t.Errorf("%v: deadline %v", e, d)
		}
		if age, ok := e.MaxAge(now); !ok || time.Duration(age)*time.Second > core.MaxDeadline.Sub(now) {
			t.Errorf("%v: Max-Age %d outlives %v", e, age, core.MaxDeadline)
		}
	}
	if d := core.AtDateTime(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)).Deadline(now, 0); !d.Equal(core.MinDeadline) {
		t.Errorf("year 1 deadline = %v, want %v", d, core.MinDeadline)
	}
	if d := core.OnSessionEnd().Deadline(now, time.Duration(1<<63-1)); d.After(core.MaxDeadline) {
		t.Errorf("session-end deadline %v", d)
	}
}

func TestCachingStoreTTLAcrossInstances(t *testing.T) {
	ctx := context.Background()
	backend := core.NewMemoryStore()
	clock := time.Now()
	tick := func() time.Time { return clock }
	a := core.NewCachingStore(backend, core.CachingOptions{TTL: time.Second, Now: tick})
	b := core.NewCachingStore(backend, core.CachingOptions{TTL: time.Second, FeedTTL: time.Hour, Now: tick})
	token := seeded(t, a, "k", "v")
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); !ok {
		t.Fatal("b does not see the session")
	}

	// Log out on a: b may serve its copy for at most the TTL.
	if err := core.NewSession(a, token, nil).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(999 * time.Millisecond)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); !ok {
		t.Fatal("within the TTL b asked the backend (the cache is not used)")
	}
	clock = clock.Add(2 * time.Millisecond)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); ok {
		t.Fatal("b served a logged-out session after its TTL")
	}

	// With a feed up, entries live for FeedTTL and are evicted by it.
	token = seeded(t, a, "k", "v")
	id := core.NewSession(a, token, nil).ID()
	b.SetInvalidationFeed(true)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); !ok {
		t.Fatal("b does not see the session")
	}
	if err := backend.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(10 * time.Minute)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); !ok {
		t.Fatal("with the feed up, b dropped its entry before FeedTTL")
	}
	b.Evict(id)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); ok {
		t.Fatal("b served an evicted session")
	}

	// The feed going down brings the TTL back at once.
	token = seeded(t, a, "k", "v")
	id = core.NewSession(a, token, nil).ID()
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); !ok {
		t.Fatal("b does not see the session")
	}
	if err := backend.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	b.SetInvalidationFeed(false)
	clock = clock.Add(2 * time.Second)
	if ok, _ := core.NewSession(b, token, nil).Get(ctx, "k", new(string)); ok {
		t.Fatal("after the feed went down b served an entry older than the TTL")
	}
}

func TestCachingStoreConflictHintFromCache(t *testing.T) {
	ctx := context.Background()
	backend := &countingStore{MemoryStore: core.NewMemoryStore()}
	c := core.NewCachingStore(backend, core.CachingOptions{})
	token := seeded(t, c, "n", 1)
	a := core.NewSession(c, token, nil)
	b := core.NewSession(c, token, nil)
	if _, err := a.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, b, core.Saved)
	backend.reset()
	if err := a.Insert(ctx, "a", 3); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, a, core.Saved)
	if l, s := backend.loads.Load(), backend.saves.Load(); l != 0 || s != 1 {
		t.Fatalf("a save behind the cached version cost %d loads and %d saves, want 0 and 1", l, s)
	}
	keys, _ := core.NewSession(backend, token, nil).Keys(ctx)
	if strings.Join(keys, ",") != "a,b,n" {
		t.Fatalf("keys = %v", keys)
	}
}

func TestCachingStoreRevokesUserSessions(t *testing.T) {
	ctx := context.Background()
	backend := core.NewMemoryStore()
	c := core.NewCachingStore(backend, core.CachingOptions{TTL: time.Hour})
	var tokens []string
	for range 3 {
		s := core.NewSession(c, "", nil)
		if err := s.Insert(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUser(ctx, "ada"); err != nil {
			t.Fatal(err)
		}
		commit(t, ctx, s, core.Saved)
		tokens = append(tokens, s.Token().String())
	}
	keep := core.NewSession(c, tokens[0], nil).ID()
	if n, err := c.DeleteUserSessions(ctx, "ada", keep); err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions = %d, %v", n, err)
	}
	for i, tok := range tokens {
		ok, err := core.NewSession(c, tok, nil).Get(ctx, "k", new(string))
		if err != nil || ok != (i == 0) {
			t.Fatalf("session %d served = %v, %v after revoking the others", i, ok, err)
		}
	}
	list, err := c.UserSessions(ctx, "ada", time.Now())
	if err != nil || len(list) != 1 || list[0].ID != keep {
		t.Fatalf("UserSessions = %v, %v", list, err)
	}
	plain := core.NewCachingStore(plainStore{backend}, core.CachingOptions{})
	if _, err := plain.DeleteUserSessions(ctx, "ada", ""); !errors.Is(err, core.ErrNotSupported) {
		t.Fatalf("DeleteUserSessions without support = %v", err)
	}
}

// plainStore hides MemoryStore's UserStore methods.
type plainStore struct{ core.Store }

func TestSetUserRefusesWhatStoresCannotIndex(t *testing.T) {
	ctx := context.Background()
	sess := core.NewSession(core.NewMemoryStore(), "", nil)
	for _, user := range []string{"a\x00b", "\xff", strings.Repeat("u", core.MaxUserLen+1)} {
		if err := sess.SetUser(ctx, user); err == nil {
			t.Errorf("SetUser(%q) accepted", user)
		}
	}
	if err := sess.SetUser(ctx, strings.Repeat("u", core.MaxUserLen)); err != nil {
		t.Fatal(err)
	}
	if u, _ := sess.User(ctx); len(u) != core.MaxUserLen {
		t.Fatalf("user = %q", u)
	}
}

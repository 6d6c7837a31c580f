package core_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// countingStore counts calls into a MemoryStore and can fail or corrupt them.
type countingStore struct {
	*core.MemoryStore
	loads, creates, saves, deletes atomic.Int32
	failLoad                       error
	alwaysConflict                 bool
}

func (c *countingStore) Load(ctx context.Context, id core.ID, now time.Time) (*core.Record, error) {
	c.loads.Add(1)
	if c.failLoad != nil {
		return nil, c.failLoad
	}
	return c.MemoryStore.Load(ctx, id, now)
}

func (c *countingStore) Create(ctx context.Context, rec *core.Record) error {
	c.creates.Add(1)
	return c.MemoryStore.Create(ctx, rec)
}

func (c *countingStore) Save(ctx context.Context, rec *core.Record) error {
	c.saves.Add(1)
	if c.alwaysConflict {
		return core.ErrConflict
	}
	return c.MemoryStore.Save(ctx, rec)
}

func (c *countingStore) Delete(ctx context.Context, id core.ID) error {
	c.deletes.Add(1)
	return c.MemoryStore.Delete(ctx, id)
}

func (c *countingStore) calls() int32 {
	return c.loads.Load() + c.creates.Load() + c.saves.Load() + c.deletes.Load()
}

func (c *countingStore) reset() {
	c.loads.Store(0)
	c.creates.Store(0)
	c.saves.Store(0)
	c.deletes.Store(0)
}

func seeded(t *testing.T, s core.Store, kv ...any) string {
	t.Helper()
	ctx := context.Background()
	sess := core.NewSession(s, "", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		if err := sess.Insert(ctx, kv[i].(string), kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := sess.Commit(ctx); err != nil || res != core.Saved {
		t.Fatalf("Commit = %v, %v", res, err)
	}
	return sess.Token().String()
}

func TestSessionQueryCounts(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	token := seeded(t, st, "n", 1)

	for _, tc := range []struct {
		name  string
		token string
		do    func(*core.Session) error
		want  int32
	}{
		{"untouched", token, func(*core.Session) error { return nil }, 0},
		{"untouched new", "", func(*core.Session) error { return nil }, 0},
		{"read", token, func(s *core.Session) error { _, _, err := core.Get[int](ctx, s, "n"); return err }, 1},
		{"read twice", token, func(s *core.Session) error {
			s.Keys(ctx)
			_, _, err := core.Get[int](ctx, s, "n")
			return err
		}, 1},
		{"read new", "", func(s *core.Session) error { _, _, err := core.Get[int](ctx, s, "n"); return err }, 0},
		{"read-modify-write", token, func(s *core.Session) error {
			n, _, err := core.Get[int](ctx, s, "n")
			if err != nil {
				return err
			}
			return s.Insert(ctx, "n", n+1)
		}, 2},
		{"write same value", token, func(s *core.Session) error {
			n, _, _ := core.Get[int](ctx, s, "n")
			return s.Insert(ctx, "n", n)
		}, 1},
		{"new session", "", func(s *core.Session) error { return s.Insert(ctx, "x", 1) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.reset()
			sess := core.NewSession(st, tc.token, nil)
			if err := tc.do(sess); err != nil {
				t.Fatal(err)
			}
			if _, err := sess.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := st.calls(); got != tc.want {
				t.Fatalf("%d store calls, want %d", got, tc.want)
			}
		})
	}
}

func TestSessionInsertUnencodable(t *testing.T) {
	ctx := context.Background()
	st := core.NewMemoryStore()
	sess := core.NewSession(st, "", nil)
	if err := sess.Insert(ctx, "ch", make(chan int)); err == nil {
		t.Fatal("Insert of a channel succeeded")
	}
	if sess.Modified() {
		t.Fatal("a failed Insert modified the session")
	}
	if res, err := sess.Commit(ctx); res != core.Unchanged || err != nil {
		t.Fatalf("Commit = %v, %v", res, err)
	}
	if st.Len() != 0 {
		t.Fatal("a failed Insert stored something")
	}
}

func TestSessionPopAndTypes(t *testing.T) {
	ctx := context.Background()
	st := core.NewMemoryStore()
	token := seeded(t, st, "s", "text", "n", 7)
	sess := core.NewSession(st, token, nil)
	var n int
	if ok, err := sess.Pop(ctx, "s", &n); !ok || err == nil {
		t.Fatalf("Pop of a string into an int = %v, %v; want a decode error", ok, err)
	}
	if keys, _ := sess.Keys(ctx); len(keys) != 2 {
		t.Fatalf("a failed Pop removed the key: %v", keys)
	}
	var s string
	if ok, err := sess.Pop(ctx, "s", &s); !ok || err != nil || s != "text" {
		t.Fatalf("Pop = %q, %v, %v", s, ok, err)
	}
	if ok, err := sess.Pop(ctx, "s", &s); ok || err != nil {
		t.Fatalf("second Pop = %v, %v", ok, err)
	}
	if empty, _ := sess.IsEmpty(ctx); empty {
		t.Fatal("session empty with n left")
	}
	if res, _ := sess.Commit(ctx); res != core.Saved {
		t.Fatalf("Commit = %v", res)
	}
	keys, _ := core.NewSession(st, token, nil).Keys(ctx)
	if strings.Join(keys, ",") != "n" {
		t.Fatalf("keys = %v, want [n]", keys)
	}
}

func TestSessionMalformedAndUnknownCookies(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	for _, presented := range []string{"not-a-token", strings.Repeat("A", 22)} {
		sess := core.NewSession(st, presented, nil)
		if _, ok, err := core.Get[int](ctx, sess, "n"); ok || err != nil {
			t.Fatalf("%q: Get = %v, %v", presented, ok, err)
		}
		if res, err := sess.Commit(ctx); res != core.Removed || err != nil {
			t.Fatalf("%q: Commit = %v, %v; want removed", presented, res, err)
		}
	}
	// An unknown token is never adopted: a new session gets a fresh one.
	fixed := strings.Repeat("B", 21) + "A"
	sess := core.NewSession(st, fixed, nil)
	if err := sess.Insert(ctx, "n", 1); err != nil {
		t.Fatal(err)
	}
	if res, _ := sess.Commit(ctx); res != core.Saved || sess.Token().String() == fixed {
		t.Fatalf("Commit = %v with token %q: the attacker-chosen token was adopted", res, sess.Token())
	}
	// Malformed and untouched: removal without any store call.
	st.reset()
	if res, _ := core.NewSession(st, "%%%", nil).Commit(ctx); res != core.Removed || st.calls() != 0 {
		t.Fatalf("malformed untouched: %v after %d calls", res, st.calls())
	}
}

func TestSessionCorruptRecordIsAbsent(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	st := &countingStore{MemoryStore: core.NewMemoryStore(), failLoad: errors.Join(core.ErrCorruptRecord, errors.New("bad msgpack"))}
	tok, _ := core.NewToken(nil)
	sess := core.NewSession(st, tok.String(), &core.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, ok, err := core.Get[int](ctx, sess, "n"); ok || err != nil {
		t.Fatalf("Get on a corrupt record = %v, %v; want absent", ok, err)
	}
	if !strings.Contains(logs.String(), "cannot be read") || strings.Contains(logs.String(), tok.String()) {
		t.Fatalf("log = %q: want a report without the token", logs.String())
	}
	st.failLoad = errors.New("database down")
	if _, _, err := core.Get[int](ctx, core.NewSession(st, tok.String(), nil), "n"); err == nil {
		t.Fatal("a store failure was not reported")
	}
}

func TestSessionTooManyConflicts(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	token := seeded(t, st, "n", 1)
	st.alwaysConflict = true
	sess := core.NewSession(st, token, &core.Options{MaxConflictRetries: 3})
	if err := sess.Insert(ctx, "n", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Commit(ctx); !errors.Is(err, core.ErrTooManyConflicts) {
		t.Fatalf("Commit = %v, want ErrTooManyConflicts", err)
	}
	if got := st.saves.Load(); got != 4 {
		t.Fatalf("%d save attempts, want 4", got)
	}
}

func TestSessionAlwaysSaveRenews(t *testing.T) {
	ctx := context.Background()
	st := core.NewMemoryStore()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := &core.Options{Expiry: core.OnInactivity(time.Minute), AlwaysSave: true, Now: func() time.Time { return clock }}
	sess := core.NewSession(st, "", opts)
	sess.Insert(ctx, "k", "v")
	if res, _ := sess.Commit(ctx); res != core.Saved {
		t.Fatal(res)
	}
	token := sess.Token().String()
	clock = clock.Add(50 * time.Second)
	if res, err := core.NewSession(st, token, opts).Commit(ctx); res != core.Saved || err != nil {
		t.Fatalf("untouched AlwaysSave Commit = %v, %v", res, err)
	}
	clock = clock.Add(50 * time.Second) // 100 s after creation, 50 s after the renewal
	if v, ok, err := core.Get[string](ctx, core.NewSession(st, token, opts), "k"); !ok || err != nil || v != "v" {
		t.Fatalf("renewed session lost: %q, %v, %v", v, ok, err)
	}
	if res, _ := core.NewSession(st, "", opts).Commit(ctx); res != core.Unchanged {
		t.Fatalf("AlwaysSave wrote a session the client does not have: %v", res)
	}
}

func TestSessionCommitTwice(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	sess := core.NewSession(st, "", nil)
	sess.Insert(ctx, "a", 1)
	if res, _ := sess.Commit(ctx); res != core.Saved {
		t.Fatal(res)
	}
	tok := sess.Token()
	if res, _ := sess.Commit(ctx); res != core.Unchanged {
		t.Fatalf("second Commit with no change = %v", res)
	}
	sess.Insert(ctx, "b", 2)
	if res, _ := sess.Commit(ctx); res != core.Saved || !sess.Token().Equal(tok) {
		t.Fatalf("Commit after a late change = %v", res)
	}
	keys, _ := core.NewSession(st, tok.String(), nil).Keys(ctx)
	if strings.Join(keys, ",") != "a,b" {
		t.Fatalf("keys = %v", keys)
	}
}

func TestSessionSetExpiry(t *testing.T) {
	ctx := context.Background()
	st := core.NewMemoryStore()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := &core.Options{Now: func() time.Time { return clock }}
	sess := core.NewSession(st, "", opts)
	sess.Insert(ctx, "k", "v")
	at := clock.Add(3 * time.Hour)
	sess.SetExpiry(core.AtDateTime(at))
	if !sess.ExpiresAt().Equal(at) {
		t.Fatalf("ExpiresAt = %v", sess.ExpiresAt())
	}
	sess.Commit(ctx)
	rec, _ := st.Load(ctx, sess.ID(), clock)
	if rec == nil || !rec.Expiry.Equal(at) {
		t.Fatalf("stored expiry = %v, want %v", rec, at)
	}
}

func TestDeleteExpiredEvery(t *testing.T) {
	st := core.NewMemoryStore()
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	for range 25 {
		tok, _ := core.NewToken(nil)
		st.Create(ctx, &core.Record{ID: tok.ID(), Expiry: past})
	}
	live, _ := core.NewToken(nil)
	st.Create(ctx, &core.Record{ID: live.ID(), Expiry: time.Now().Add(time.Hour)})

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- core.DeleteExpiredEvery(runCtx, st, 20*time.Millisecond, core.CleanupOptions{Batch: 10})
	}()
	if n := st.Len(); n != 26 {
		t.Fatalf("records deleted before the first period: %d left", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.Len() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("DeleteExpiredEvery returned %v", err)
	}
	if st.Len() != 1 {
		t.Fatalf("%d records left, want the live one", st.Len())
	}
}

// failingStore fails DeleteExpired a few times, then succeeds.
type failingStore struct {
	*core.MemoryStore
	fails atomic.Int32
	calls atomic.Int32
}

func (f *failingStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	f.calls.Add(1)
	if f.fails.Add(-1) >= 0 {
		return 0, errors.New("database unavailable")
	}
	return f.MemoryStore.DeleteExpired(ctx, now, limit)
}

func TestDeleteExpiredEveryKeepsGoingAfterFailure(t *testing.T) {
	st := &failingStore{MemoryStore: core.NewMemoryStore()}
	st.fails.Store(1)
	tok, _ := core.NewToken(nil)
	st.Create(context.Background(), &core.Record{ID: tok.ID(), Expiry: time.Now().Add(-time.Hour)})
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go core.DeleteExpiredEvery(ctx, st, 50*time.Millisecond, core.CleanupOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for st.Len() != 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if st.Len() != 0 {
		t.Fatal("expired record not deleted after a failed round")
	}
	if !strings.Contains(logs.String(), "database unavailable") {
		t.Fatalf("failure not logged: %q", logs.String())
	}
}

func TestSessionSetExpiryAloneIsSaved(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := &core.Options{Now: func() time.Time { return clock }}
	token := seeded(t, st, "k", "v")
	st.reset()
	sess := core.NewSession(st, token, opts)
	sess.SetExpiry(core.OnInactivity(time.Hour))
	if res, err := sess.Commit(ctx); res != core.Saved || err != nil {
		t.Fatalf("Commit after SetExpiry alone = %v, %v", res, err)
	}
	if st.loads.Load() != 1 || st.saves.Load() != 1 {
		t.Fatalf("%d loads, %d saves; want 1 and 1", st.loads.Load(), st.saves.Load())
	}
	rec, _ := st.Load(ctx, sess.ID(), clock)
	if rec == nil || !rec.Expiry.Equal(clock.Add(time.Hour)) || len(rec.Data) != 1 {
		t.Fatalf("record after SetExpiry = %+v", rec)
	}
}

// twoLoaded returns two sessions of one seeded record, both already loaded
// at version 1, on st.
func twoLoaded(t *testing.T, st core.Store) (a, b *core.Session) {
	t.Helper()
	ctx := context.Background()
	token := seeded(t, st, "n", 1)
	a, b = core.NewSession(st, token, nil), core.NewSession(st, token, nil)
	for _, s := range []*core.Session{a, b} {
		if _, _, err := core.Get[int](ctx, s, "n"); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestSessionConflictHintSavesTheReload(t *testing.T) {
	// MemoryStore answers a conflict with the record that won: the losing
	// save replays on it without loading again, and keeps both writes.
	ctx := context.Background()
	st := &countingStore{MemoryStore: core.NewMemoryStore()}
	a, b := twoLoaded(t, st)
	if err := b.Insert(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, b, core.Saved)
	st.reset()
	if err := a.Insert(ctx, "a", 3); err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, a, core.Saved)
	if l, sv := st.loads.Load(), st.saves.Load(); l != 0 || sv != 2 {
		t.Errorf("conflicting save: %d loads and %d saves, want 0 and 2", l, sv)
	}
	keys, err := core.NewSession(st, a.Token().String(), nil).Keys(ctx)
	if err != nil || strings.Join(keys, ",") != "a,b,n" {
		t.Errorf("keys after both saves: %q, %v; want a,b,n", keys, err)
	}
}

// hintStore answers every conflict of its MemoryStore with hint, whatever
// the store holds: a stale or unusable hint.
type hintStore struct {
	*countingStore
	hint *core.Record
}

func (h *hintStore) Save(ctx context.Context, rec *core.Record) error {
	err := h.countingStore.Save(ctx, rec)
	if errors.Is(err, core.ErrConflict) {
		return &core.ConflictError{Current: h.hint.Clone()}
	}
	return err
}

func TestSessionConflictHintStaleOrUnusable(t *testing.T) {
	ctx := context.Background()
	past := time.Now().Add(-time.Hour).UTC()
	for _, tc := range []struct {
		name      string
		hint      func(id core.ID) *core.Record
		wantLoads int32
	}{
		// Newer than what the session had, but older than the store's
		// record: the replay conflicts again and then loads for real.
		{"stale", func(id core.ID) *core.Record {
			return &core.Record{ID: id, Data: map[string][]byte{"stale": []byte("1")}, Expiry: time.Now().Add(time.Hour).UTC(), Version: 2}
		}, 1},
		{"not newer", func(id core.ID) *core.Record {
			return &core.Record{ID: id, Data: map[string][]byte{"stale": []byte("1")}, Expiry: time.Now().Add(time.Hour).UTC(), Version: 1}
		}, 1},
		{"other id", func(core.ID) *core.Record {
			return &core.Record{ID: "someone-else", Data: map[string][]byte{"stale": []byte("1")}, Expiry: time.Now().Add(time.Hour).UTC(), Version: 9}
		}, 1},
		{"expired", func(id core.ID) *core.Record {
			return &core.Record{ID: id, Data: map[string][]byte{"stale": []byte("1")}, Expiry: past, Version: 9}
		}, 1},
		{"nil", func(core.ID) *core.Record { return nil }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &countingStore{MemoryStore: core.NewMemoryStore()}
			st := &hintStore{countingStore: cs}
			a, b := twoLoaded(t, st)
			st.hint = tc.hint(a.ID())
			// Two writes by b: the store is at version 3, the stale hint
			// says 2.
			for i := range 2 {
				if err := b.Insert(ctx, "b", i); err != nil {
					t.Fatal(err)
				}
				commit(t, ctx, b, core.Saved)
			}
			cs.reset()
			if err := a.Insert(ctx, "a", 3); err != nil {
				t.Fatal(err)
			}
			commit(t, ctx, a, core.Saved)
			if l := cs.loads.Load(); l != tc.wantLoads {
				t.Errorf("%d loads, want %d", l, tc.wantLoads)
			}
			keys, err := core.NewSession(cs.MemoryStore, a.Token().String(), nil).Keys(ctx)
			if err != nil || strings.Join(keys, ",") != "a,b,n" {
				t.Errorf("keys: %q, %v; want a,b,n (nothing of the hint)", keys, err)
			}
		})
	}
}

func commit(t *testing.T, ctx context.Context, s *core.Session, want core.CommitResult) {
	t.Helper()
	if res, err := s.Commit(ctx); err != nil || res != want {
		t.Fatalf("Commit = %v, %v; want %v", res, err, want)
	}
}

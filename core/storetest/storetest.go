// Package storetest is the conformance suite for core.Store implementations.
// Every store in sqlsessions runs it; a third-party store should too:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) core.Store { return newTestStore(t) })
//	}
//
// newStore may return a fresh store for every subtest or the same one: the
// suite uses random ids and leaves other records alone, except that it
// expects no record to expire in the year 2001 but its own.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// Run runs the whole suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T) core.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, core.Store)
	}{
		{"CreateLoad", testCreateLoad},
		{"LoadMissing", testLoadMissing},
		{"ExpiryFilter", testExpiryFilter},
		{"Collision", testCollision},
		{"SaveVersions", testSaveVersions},
		{"SaveMissing", testSaveMissing},
		{"SaveEmptyDeletes", testSaveEmptyDeletes},
		{"Delete", testDelete},
		{"DeleteExpired", testDeleteExpired},
		{"CaseSensitiveIDs", testCaseSensitiveIDs},
		{"LargeValue", testLargeValue},
		{"UnicodeKeys", testUnicodeKeys},
		{"EmptyData", testEmptyData},
		{"CanceledContext", testCanceledContext},
		{"Ownership", testOwnership},
		{"SessionRoundTrip", testSessionRoundTrip},
		{"SessionCollisionRetry", testSessionCollisionRetry},
		{"SessionConcurrentKeys", testSessionConcurrentKeys},
		{"SessionReplayRemoveAndClear", testSessionReplay},
		{"SessionFlushNotResurrected", testSessionFlushNotResurrected},
		{"SessionCycleNotResurrected", testSessionCycleNotResurrected},
		{"SessionExpiry", testSessionExpiry},
		{"SessionRemoveLastValue", testSessionRemoveLast},
		{"Take", testTake},
		{"CreatedAndUser", testCreatedAndUser},
		{"UserSessions", testUserSessions},
		{"ExtremeExpiry", testExtremeExpiry},
		{"SessionUpdateConcurrent", testSessionUpdateConcurrent},
		{"SessionCycleReplaysConcurrentWrite", testSessionCycleReplays},
		{"SessionCycleKeepsAcknowledgedWrites", testSessionCycleKeepsAcknowledged},
		{"SessionSizeLimit", testSessionSizeLimit},
		{"SessionPresentedTokens", testSessionPresentedTokens},
		{"SessionMaxLifetime", testSessionMaxLifetime},
		{"SessionUser", testSessionUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// now is the suite's clock: the present, at microsecond precision, which
// every SQL backend keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func newID(t *testing.T) core.ID {
	t.Helper()
	tok, err := core.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok.ID()
}

func enc(t *testing.T, s core.Store, v any) []byte {
	t.Helper()
	b, err := s.Codec().Marshal(v)
	if err != nil {
		t.Fatalf("encoding %v: %v", v, err)
	}
	return b
}

func newRecord(t *testing.T, s core.Store, expiry time.Time, kv ...any) *core.Record {
	t.Helper()
	rec := &core.Record{ID: newID(t), Data: map[string][]byte{}, Expiry: expiry}
	for i := 0; i+1 < len(kv); i += 2 {
		rec.Data[kv[i].(string)] = enc(t, s, kv[i+1])
	}
	return rec
}

func mustCreate(t *testing.T, s core.Store, rec *core.Record) {
	t.Helper()
	if err := s.Create(context.Background(), rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if rec.Version != 1 {
		t.Fatalf("Create set version %d, want 1", rec.Version)
	}
}

func mustLoad(t *testing.T, s core.Store, id core.ID, at time.Time) *core.Record {
	t.Helper()
	rec, err := s.Load(context.Background(), id, at)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rec
}

func sameRecord(t *testing.T, got, want *core.Record) {
	t.Helper()
	if got == nil {
		t.Fatalf("record %s not found", want.ID)
	}
	if got.ID != want.ID || got.Version != want.Version || !got.Expiry.Equal(want.Expiry) {
		t.Fatalf("got record (%s v%d %s), want (%s v%d %s)", got.ID, got.Version, got.Expiry, want.ID, want.Version, want.Expiry)
	}
	if !got.Created.Equal(want.Created) || got.User != want.User {
		t.Fatalf("got record created %v by user %q, want created %v by %q", got.Created, got.User, want.Created, want.User)
	}
	if got.Expiry.Location() != time.UTC {
		t.Errorf("expiry %v is not in UTC", got.Expiry)
	}
	if len(got.Data) != len(want.Data) {
		t.Fatalf("got %d keys, want %d", len(got.Data), len(want.Data))
	}
	for k, v := range want.Data {
		if !bytes.Equal(got.Data[k], v) {
			t.Fatalf("key %q: got %x, want %x", k, got.Data[k], v)
		}
	}
}

func testCreateLoad(t *testing.T, s core.Store) {
	rec := newRecord(t, s, now().Add(time.Hour), "a", 1, "b", "two", "c", []string{"x", "y"})
	mustCreate(t, s, rec)
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)
}

func testLoadMissing(t *testing.T, s core.Store) {
	if rec := mustLoad(t, s, newID(t), now()); rec != nil {
		t.Fatalf("Load of an unknown id returned %+v", rec)
	}
}

func testExpiryFilter(t *testing.T, s core.Store) {
	exp := now().Add(time.Hour)
	rec := newRecord(t, s, exp, "k", "v")
	mustCreate(t, s, rec)
	if got := mustLoad(t, s, rec.ID, exp.Add(-time.Millisecond)); got == nil {
		t.Fatal("record not served 1ms before its expiry")
	}
	if got := mustLoad(t, s, rec.ID, exp.Add(time.Millisecond)); got != nil {
		t.Fatal("record served 1ms after its expiry")
	}
	if got := mustLoad(t, s, rec.ID, exp.Add(time.Second)); got != nil {
		t.Fatal("record served 1s after its expiry")
	}
}

func testCollision(t *testing.T, s core.Store) {
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "owner", "first")
	mustCreate(t, s, rec)
	dup := &core.Record{ID: rec.ID, Data: map[string][]byte{"owner": enc(t, s, "second")}, Expiry: now().Add(2 * time.Hour)}
	if err := s.Create(ctx, dup); !errors.Is(err, core.ErrCollision) {
		t.Fatalf("Create of an existing id: got %v, want ErrCollision", err)
	}
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)

	// An expired record still holds its id until it is deleted.
	old := newRecord(t, s, now().Add(-time.Hour), "k", "v")
	mustCreate(t, s, old)
	dup = &core.Record{ID: old.ID, Data: map[string][]byte{"k": enc(t, s, "w")}, Expiry: now().Add(time.Hour)}
	if err := s.Create(ctx, dup); !errors.Is(err, core.ErrCollision) {
		t.Fatalf("Create over an expired record: got %v, want ErrCollision", err)
	}
}

func testSaveVersions(t *testing.T, s core.Store) {
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "n", 1)
	mustCreate(t, s, rec)

	v2 := rec.Clone()
	v2.Data["n"] = enc(t, s, 2)
	v2.Expiry = now().Add(2 * time.Hour)
	if err := s.Save(ctx, v2); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if v2.Version != 2 {
		t.Fatalf("Save set version %d, want 2", v2.Version)
	}
	sameRecord(t, mustLoad(t, s, rec.ID, now()), v2)

	stale := rec.Clone() // still version 1
	stale.Data["n"] = enc(t, s, 99)
	err := s.Save(ctx, stale)
	if !errors.Is(err, core.ErrConflict) {
		t.Fatalf("Save at a stale version: got %v, want ErrConflict", err)
	}
	// A store that names the record which won must name it exactly: here
	// nothing else wrote, so its hint is the stored record.
	var ce *core.ConflictError
	if errors.As(err, &ce) && ce.Current != nil {
		sameRecord(t, ce.Current, v2)
	}
	if stale.Version != 1 {
		t.Fatalf("a failed Save changed the version to %d", stale.Version)
	}
	sameRecord(t, mustLoad(t, s, rec.ID, now()), v2)
}

func testSaveMissing(t *testing.T, s core.Store) {
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	rec.Version = 1
	err := s.Save(context.Background(), rec)
	if !errors.Is(err, core.ErrConflict) {
		t.Fatalf("Save of a missing record: got %v, want ErrConflict", err)
	}
	if ce := (*core.ConflictError)(nil); errors.As(err, &ce) && ce.Current != nil {
		t.Fatalf("Save of a missing record named a current record: %+v", ce.Current)
	}
	if got := mustLoad(t, s, rec.ID, now()); got != nil {
		t.Fatal("Save of a missing record created it")
	}
}

func testSaveEmptyDeletes(t *testing.T, s core.Store) {
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	mustCreate(t, s, rec)

	stale := &core.Record{ID: rec.ID, Data: map[string][]byte{}, Expiry: rec.Expiry, Version: 7}
	if err := s.Save(ctx, stale); !errors.Is(err, core.ErrConflict) {
		t.Fatalf("emptying Save at a wrong version: got %v, want ErrConflict", err)
	}
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)

	empty := &core.Record{ID: rec.ID, Data: map[string][]byte{}, Expiry: rec.Expiry, Version: 1}
	if err := s.Save(ctx, empty); err != nil {
		t.Fatalf("emptying Save: %v", err)
	}
	if got := mustLoad(t, s, rec.ID, now()); got != nil {
		t.Fatal("Save with empty data did not delete the record")
	}
}

func testDelete(t *testing.T, s core.Store) {
	ctx := context.Background()
	keep := newRecord(t, s, now().Add(time.Hour), "k", "keep")
	gone := newRecord(t, s, now().Add(time.Hour), "k", "gone")
	mustCreate(t, s, keep)
	mustCreate(t, s, gone)
	if err := s.Delete(ctx, gone.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := mustLoad(t, s, gone.ID, now()); got != nil {
		t.Fatal("deleted record still loads")
	}
	sameRecord(t, mustLoad(t, s, keep.ID, now()), keep)
	if err := s.Delete(ctx, gone.ID); err != nil {
		t.Fatalf("Delete of a missing id: %v", err)
	}
	if err := s.Delete(ctx, newID(t)); err != nil {
		t.Fatalf("Delete of an unknown id: %v", err)
	}
}

func testDeleteExpired(t *testing.T, s core.Store) {
	ctx := context.Background()
	t0 := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	var expired, live []*core.Record
	for i := range 10 {
		rec := newRecord(t, s, t0.Add(-time.Duration(i+1)*time.Minute), "i", i)
		mustCreate(t, s, rec)
		expired = append(expired, rec)
	}
	for i := range 5 {
		rec := newRecord(t, s, t0.Add(time.Duration(i+1)*time.Minute), "i", i)
		mustCreate(t, s, rec)
		live = append(live, rec)
	}
	n, err := s.DeleteExpired(ctx, t0, 3)
	if err != nil || n != 3 {
		t.Fatalf("DeleteExpired(limit 3) = %d, %v; want 3", n, err)
	}
	n, err = s.DeleteExpired(ctx, t0, 0)
	if err != nil || n != 7 {
		t.Fatalf("DeleteExpired(no limit) = %d, %v; want 7", n, err)
	}
	n, err = s.DeleteExpired(ctx, t0, 0)
	if err != nil || n != 0 {
		t.Fatalf("DeleteExpired again = %d, %v; want 0", n, err)
	}
	for _, rec := range live {
		sameRecord(t, mustLoad(t, s, rec.ID, t0), rec)
	}
	for _, rec := range expired {
		// Create succeeds only if the expired row is really gone.
		again := &core.Record{ID: rec.ID, Data: rec.Data, Expiry: now().Add(time.Hour)}
		if err := s.Create(ctx, again); err != nil {
			t.Fatalf("expired record %s was not deleted: %v", rec.ID, err)
		}
	}
}

func testCaseSensitiveIDs(t *testing.T, s core.Store) {
	ctx := context.Background()
	var lower, upper *core.Record
	for lower == nil {
		rec := newRecord(t, s, now().Add(time.Hour), "case", "lower")
		if i := strings.IndexAny(string(rec.ID), "abcdefghijklmnopqrstuvwxyz"); i >= 0 {
			rec.ID = core.ID(strings.ToLower(string(rec.ID)))
			lower = rec
		}
	}
	upper = newRecord(t, s, now().Add(time.Hour), "case", "upper")
	upper.ID = core.ID(strings.ToUpper(string(lower.ID)))
	mustCreate(t, s, lower)
	if err := s.Create(ctx, upper); err != nil {
		t.Fatalf("ids differing only in case collide: %v", err)
	}
	sameRecord(t, mustLoad(t, s, lower.ID, now()), lower)
	sameRecord(t, mustLoad(t, s, upper.ID, now()), upper)
}

func testLargeValue(t *testing.T, s core.Store) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	rec := newRecord(t, s, now().Add(time.Hour), "big", big)
	mustCreate(t, s, rec)
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)
}

func testUnicodeKeys(t *testing.T, s core.Store) {
	rec := newRecord(t, s, now().Add(time.Hour), "ключ", "значение", "鍵", "値", "emoji 🍪", "🍪", "", "empty key")
	mustCreate(t, s, rec)
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)
}

func testEmptyData(t *testing.T, s core.Store) {
	rec := newRecord(t, s, now().Add(time.Hour))
	mustCreate(t, s, rec)
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)
}

func testCanceledContext(t *testing.T, s core.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	if err := s.Create(ctx, rec); err == nil {
		t.Error("Create with a canceled context succeeded")
	}
	if _, err := s.Load(ctx, rec.ID, now()); err == nil {
		t.Error("Load with a canceled context succeeded")
	}
	rec.Version = 1
	if err := s.Save(ctx, rec); err == nil {
		t.Error("Save with a canceled context succeeded")
	}
	if err := s.Delete(ctx, rec.ID); err == nil {
		t.Error("Delete with a canceled context succeeded")
	}
	if _, err := s.DeleteExpired(ctx, now(), 0); err == nil {
		t.Error("DeleteExpired with a canceled context succeeded")
	}
}

func testOwnership(t *testing.T, s core.Store) {
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	want := rec.Clone()
	mustCreate(t, s, rec)
	rec.Data["k"] = enc(t, s, "changed after Create")
	rec.Data["extra"] = enc(t, s, 1)
	want.Version = 1
	got := mustLoad(t, s, rec.ID, now())
	sameRecord(t, got, want)

	got.Data["k"] = enc(t, s, "changed after Load")
	sameRecord(t, mustLoad(t, s, rec.ID, now()), want)

	upd := want.Clone()
	upd.Data["k"] = enc(t, s, "saved")
	if err := s.Save(ctx, upd); err != nil {
		t.Fatal(err)
	}
	saved := upd.Clone()
	upd.Data["k"] = enc(t, s, "changed after Save")
	sameRecord(t, mustLoad(t, s, rec.ID, now()), saved)
}

type profile struct {
	Name  string
	Age   int
	Tags  []string
	Since time.Time
}

func commit(t *testing.T, sess *core.Session, want core.CommitResult) {
	t.Helper()
	got, err := sess.Commit(context.Background())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got != want {
		t.Fatalf("Commit = %v, want %v", got, want)
	}
}

// commitSuperseded commits a session whose changes another request's
// delete or cycle must drop: Superseded, with ErrSuperseded.
func commitSuperseded(t *testing.T, sess *core.Session) {
	t.Helper()
	got, err := sess.Commit(context.Background())
	if got != core.Superseded || !errors.Is(err, core.ErrSuperseded) {
		t.Fatalf("Commit = %v, %v; want %v, ErrSuperseded", got, err, core.Superseded)
	}
}

func newSession(t *testing.T, s core.Store) (*core.Session, string) {
	t.Helper()
	ctx := context.Background()
	sess := core.NewSession(s, "", nil)
	if err := sess.Insert(ctx, "seed", "value"); err != nil {
		t.Fatal(err)
	}
	commit(t, sess, core.Saved)
	return sess, sess.Token().String()
}

func testSessionRoundTrip(t *testing.T, s core.Store) {
	ctx := context.Background()
	p := profile{Name: "Ada", Age: 36, Tags: []string{"math", "engines"}, Since: time.Date(1843, 7, 1, 12, 0, 0, 0, time.UTC)}
	sess := core.NewSession(s, "", nil)
	if err := sess.Insert(ctx, "count", 41); err != nil {
		t.Fatal(err)
	}
	if err := sess.Insert(ctx, "profile", p); err != nil {
		t.Fatal(err)
	}
	commit(t, sess, core.Saved)
	token := sess.Token().String()
	if len(token) != core.TokenLen {
		t.Fatalf("token %q has length %d", token, len(token))
	}
	if rec := mustLoad(t, s, core.ID(token), now()); rec != nil {
		t.Fatal("the store keeps the session under its raw token")
	}

	again := core.NewSession(s, token, nil)
	n, ok, err := core.Get[int](ctx, again, "count")
	if err != nil || !ok || n != 41 {
		t.Fatalf("Get count = %d, %v, %v", n, ok, err)
	}
	got, ok, err := core.Get[profile](ctx, again, "profile")
	if err != nil || !ok || got.Name != p.Name || got.Age != p.Age || len(got.Tags) != 2 || !got.Since.Equal(p.Since) {
		t.Fatalf("Get profile = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := core.Get[int](ctx, again, "missing"); ok || err != nil {
		t.Fatalf("Get missing = %v, %v", ok, err)
	}
	commit(t, again, core.Unchanged) // reading does not write

	if err := again.Insert(ctx, "count", 42); err != nil {
		t.Fatal(err)
	}
	commit(t, again, core.Saved)
	if again.Token().String() != token {
		t.Fatal("saving an existing session changed its token")
	}
	third := core.NewSession(s, token, nil)
	if n, _, _ := core.Get[int](ctx, third, "count"); n != 42 {
		t.Fatalf("count = %d after save, want 42", n)
	}
}

// sequence yields the given 16-byte blocks, then crypto-quality bytes from a
// counter: enough for tests that force a token collision.
type sequence struct {
	blocks [][]byte
	n      byte
}

func (s *sequence) Read(p []byte) (int, error) {
	if len(s.blocks) > 0 {
		n := copy(p, s.blocks[0])
		s.blocks = s.blocks[1:]
		return n, nil
	}
	s.n++
	for i := range p {
		p[i] = s.n ^ byte(i*31)
	}
	return len(p), nil
}

func testSessionCollisionRetry(t *testing.T, s core.Store) {
	ctx := context.Background()
	block := bytes.Repeat([]byte{0xA5}, 16)
	// Make the block unique per run, so stores shared between runs work.
	if _, err := rand.Read(block[:8]); err != nil {
		t.Fatal(err)
	}
	first := core.NewSession(s, "", &core.Options{Rand: &sequence{blocks: [][]byte{block}}})
	if err := first.Insert(ctx, "who", "first"); err != nil {
		t.Fatal(err)
	}
	commit(t, first, core.Saved)

	second := core.NewSession(s, "", &core.Options{Rand: &sequence{blocks: [][]byte{block, block}}})
	if err := second.Insert(ctx, "who", "second"); err != nil {
		t.Fatal(err)
	}
	commit(t, second, core.Saved)
	if second.Token().Equal(first.Token()) {
		t.Fatal("a colliding token was reused")
	}
	for _, c := range []struct {
		sess *core.Session
		want string
	}{{first, "first"}, {second, "second"}} {
		who, ok, err := core.Get[string](ctx, core.NewSession(s, c.sess.Token().String(), nil), "who")
		if err != nil || !ok || who != c.want {
			t.Fatalf("session %s holds %q, %v, %v; want %q", c.sess.ID(), who, ok, err, c.want)
		}
	}
}

func testSessionConcurrentKeys(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	const writers = 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			sess := core.NewSession(s, token, nil)
			if err := sess.Insert(ctx, fmt.Sprintf("key-%02d", i), i); err != nil {
				errs <- err
				return
			}
			res, err := sess.Commit(ctx)
			if err == nil && res != core.Saved {
				err = fmt.Errorf("writer %d: Commit = %v", i, res)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	keys, err := core.NewSession(s, token, nil).Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != writers+1 {
		t.Fatalf("%d keys survived, want %d: %v", len(keys), writers+1, keys)
	}
}

func testSessionReplay(t *testing.T, s core.Store) {
	ctx := context.Background()
	base := core.NewSession(s, "", nil)
	for _, k := range []string{"a", "b", "c"} {
		if err := base.Insert(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, base, core.Saved)
	token := base.Token().String()

	remover := core.NewSession(s, token, nil)
	clearer := core.NewSession(s, token, nil)
	if _, err := remover.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := clearer.Clear(ctx); err != nil { // sees a, b, c
		t.Fatal(err)
	}
	if err := clearer.Insert(ctx, "d", "d"); err != nil {
		t.Fatal(err)
	}
	writer := core.NewSession(s, token, nil)
	if err := writer.Insert(ctx, "e", "e"); err != nil {
		t.Fatal(err)
	}
	commit(t, writer, core.Saved)
	commit(t, remover, core.Saved)
	commit(t, clearer, core.Saved)

	keys, err := core.NewSession(s, token, nil).Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, ","); got != "d,e" {
		t.Fatalf("keys after concurrent remove, clear and insert = %s, want d,e", got)
	}
}

func testSessionFlushNotResurrected(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	late := core.NewSession(s, token, nil)
	if _, err := late.Keys(ctx); err != nil { // loads before the flush
		t.Fatal(err)
	}
	flusher := core.NewSession(s, token, nil)
	if err := flusher.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, flusher, core.Removed)

	if err := late.Insert(ctx, "after", "flush"); err != nil {
		t.Fatal(err)
	}
	commitSuperseded(t, late)
	if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
		t.Fatalf("flushed session came back: %v", rec.Data)
	}
}

func testSessionCycleNotResurrected(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	late := core.NewSession(s, token, nil)
	if _, err := late.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	cycler := core.NewSession(s, token, nil)
	if err := cycler.CycleID(ctx); err != nil {
		t.Fatal(err)
	}
	// The old token stops working at once, before the response is sent.
	if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
		t.Fatal("old id still loads after CycleID")
	}
	commit(t, cycler, core.Saved)
	newToken := cycler.Token().String()
	if newToken == token || newToken == "" {
		t.Fatalf("CycleID kept token %q", newToken)
	}
	if v, ok, err := core.Get[string](ctx, core.NewSession(s, newToken, nil), "seed"); err != nil || !ok || v != "value" {
		t.Fatalf("data after CycleID: %q, %v, %v", v, ok, err)
	}

	if err := late.Insert(ctx, "after", "cycle"); err != nil {
		t.Fatal(err)
	}
	commitSuperseded(t, late)
	if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
		t.Fatal("cycled session came back under its old id")
	}
}

func testSessionExpiry(t *testing.T, s core.Store) {
	ctx := context.Background()
	clock := now()
	opts := &core.Options{Expiry: core.OnInactivity(10 * time.Second), Now: func() time.Time { return clock }}
	sess := core.NewSession(s, "", opts)
	if err := sess.Insert(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	commit(t, sess, core.Saved)
	token := sess.Token().String()
	rec := mustLoad(t, s, sess.ID(), clock)
	if rec == nil || !rec.Expiry.Equal(clock.Add(10*time.Second)) {
		t.Fatalf("record expiry = %v, want %v", rec, clock.Add(10*time.Second))
	}

	clock = clock.Add(11 * time.Second)
	later := core.NewSession(s, token, opts)
	if _, ok, err := core.Get[string](ctx, later, "k"); ok || err != nil {
		t.Fatalf("expired session served: %v, %v", ok, err)
	}
	commit(t, later, core.Removed)
}

func testSessionRemoveLast(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	sess := core.NewSession(s, token, nil)
	if ok, err := sess.Remove(ctx, "seed"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	commit(t, sess, core.Removed)
	if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
		t.Fatal("session emptied by Remove is still stored")
	}
}

func mustParse(t *testing.T, token string) core.Token {
	t.Helper()
	tok, err := core.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func testCreatedAndUser(t *testing.T, s core.Store) {
	ctx := context.Background()
	created := now().Add(-time.Minute)
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	rec.Created, rec.User = created, "user-42"
	mustCreate(t, s, rec)
	sameRecord(t, mustLoad(t, s, rec.ID, now()), rec)

	// Save changes the user, never the creation time.
	upd := rec.Clone()
	upd.User = "user-7"
	upd.Created = now().Add(time.Hour)
	if err := s.Save(ctx, upd); err != nil {
		t.Fatal(err)
	}
	want := upd.Clone()
	want.Created = created
	sameRecord(t, mustLoad(t, s, rec.ID, now()), want)

	// Unbinding stores "" again; a zero creation time round-trips as zero.
	upd.User = ""
	if err := s.Save(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, rec.ID, now()); got == nil || got.User != "" {
		t.Fatalf("user after unbinding = %+v", got)
	}
	zero := newRecord(t, s, now().Add(time.Hour), "k", "v")
	mustCreate(t, s, zero)
	sameRecord(t, mustLoad(t, s, zero.ID, now()), zero)
}

// userID returns a user key no other test run uses.
func userID(t *testing.T) string {
	t.Helper()
	return "user-" + string(newID(t))
}

func testUserSessions(t *testing.T, s core.Store) {
	us, ok := s.(core.UserStore)
	if !ok {
		t.Skipf("%T does not implement core.UserStore", s)
	}
	ctx := context.Background()
	user, other := userID(t), userID(t)
	base := now().Add(-time.Hour)
	var mine []*core.Record
	for i := range 3 {
		rec := newRecord(t, s, now().Add(time.Hour), "i", i)
		rec.Created, rec.User = base.Add(time.Duration(i)*time.Minute), user
		mustCreate(t, s, rec)
		mine = append(mine, rec)
	}
	expired := newRecord(t, s, now().Add(-time.Second), "k", "v")
	expired.Created, expired.User = base, user
	mustCreate(t, s, expired)
	theirs := newRecord(t, s, now().Add(time.Hour), "k", "v")
	theirs.Created, theirs.User = base, other
	mustCreate(t, s, theirs)

	list, err := us.UserSessions(ctx, user, now())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("UserSessions listed %d sessions, want the 3 live ones: %+v", len(list), list)
	}
	for i, info := range list {
		if info.ID != mine[i].ID || !info.Created.Equal(mine[i].Created) || !info.Expiry.Equal(mine[i].Expiry) {
			t.Fatalf("session %d = %+v, want %s created %v expiring %v (oldest first)", i, info, mine[i].ID, mine[i].Created, mine[i].Expiry)
		}
	}

	// Log out the other devices: all but mine[1].
	n, err := us.DeleteUserSessions(ctx, user, mine[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // mine[0], mine[2] and the expired one
		t.Fatalf("DeleteUserSessions deleted %d, want 3", n)
	}
	for _, rec := range []*core.Record{mine[0], mine[2]} {
		if mustLoad(t, s, rec.ID, now()) != nil {
			t.Fatalf("session %s survived DeleteUserSessions", rec.ID)
		}
	}
	sameRecord(t, mustLoad(t, s, mine[1].ID, now()), mine[1])
	sameRecord(t, mustLoad(t, s, theirs.ID, now()), theirs)

	// Log out everywhere.
	if n, err := us.DeleteUserSessions(ctx, user, ""); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessions(all) = %d, %v; want 1", n, err)
	}
	if list, err := us.UserSessions(ctx, user, now()); err != nil || len(list) != 0 {
		t.Fatalf("UserSessions after logging out everywhere = %v, %v", list, err)
	}
	if n, err := us.DeleteUserSessions(ctx, userID(t), ""); err != nil || n != 0 {
		t.Fatalf("DeleteUserSessions of a user without sessions = %d, %v", n, err)
	}
}

func testExtremeExpiry(t *testing.T, s core.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		expiry core.Expiry
	}{
		{"year 10000", core.AtDateTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))},
		{"year 300000", core.AtDateTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC))},
		{"longest inactivity", core.OnInactivity(time.Duration(1<<63 - 1))},
		{"session end lifetime of 290 years", core.OnSessionEnd()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &core.Options{Expiry: tc.expiry, SessionEndLifetime: time.Duration(1<<63 - 1)}
			sess := core.NewSession(s, "", opts)
			if err := sess.Insert(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			commit(t, sess, core.Saved)
			if age, ok := sess.MaxAge(now()); ok && (age <= 0 || time.Duration(age)*time.Second > time.Until(core.MaxDeadline)) {
				t.Fatalf("Max-Age %d outlives the record's deadline", age)
			}
			again := core.NewSession(s, sess.Token().String(), opts)
			if v, ok, err := core.Get[string](ctx, again, "k"); err != nil || !ok || v != "v" {
				t.Fatalf("a session saved with %v does not load: %q, %v, %v", tc.expiry, v, ok, err)
			}
			if err := again.Insert(ctx, "k", "w"); err != nil {
				t.Fatal(err)
			}
			commit(t, again, core.Saved)
			rec := mustLoad(t, s, sess.ID(), now())
			if rec == nil || rec.Expiry.After(core.MaxDeadline) || rec.Expiry.Before(now().Add(200*365*24*time.Hour)) {
				t.Fatalf("stored deadline = %v, want within 200 years of now and %v", rec, core.MaxDeadline)
			}
		})
	}
}

func testSessionUpdateConcurrent(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			sess := core.NewSession(s, token, nil)
			if _, err := core.Update(ctx, sess, "counter", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
				errs <- err
				return
			}
			item := fmt.Sprintf("item-%02d", i)
			if _, err := core.Update(ctx, sess, "cart", func(cart []string, _ bool) ([]string, error) {
				return append(cart, item), nil
			}); err != nil {
				errs <- err
				return
			}
			if res, err := sess.Commit(ctx); err != nil || res != core.Saved {
				errs <- fmt.Errorf("writer %d: Commit = %v, %v", i, res, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final := core.NewSession(s, token, nil)
	n, _, err := core.Get[int](ctx, final, "counter")
	if err != nil {
		t.Fatal(err)
	}
	cart, _, err := core.Get[[]string](ctx, final, "cart")
	if err != nil {
		t.Fatal(err)
	}
	if n != writers || len(cart) != writers {
		t.Fatalf("%d concurrent updates left counter %d and %d cart items: %v", writers, n, len(cart), cart)
	}
}

func testSessionCycleReplays(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, token := newSession(t, s)
	login := core.NewSession(s, token, nil)
	if _, err := login.Keys(ctx); err != nil { // reads before the other write
		t.Fatal(err)
	}
	if err := login.Insert(ctx, "role", "admin"); err != nil {
		t.Fatal(err)
	}
	writer := core.NewSession(s, token, nil)
	if err := writer.Insert(ctx, "written", "before the cycle"); err != nil {
		t.Fatal(err)
	}
	commit(t, writer, core.Saved)

	if err := login.CycleID(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, login, core.Saved)
	cycled := core.NewSession(s, login.Token().String(), nil)
	keys, err := cycled.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, ","); got != "role,seed,written" {
		t.Fatalf("keys after CycleID = %s, want role,seed,written (a write committed before the cycle was lost)", got)
	}
	if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
		t.Fatal("old id still stored after CycleID")
	}
}

// testSessionCycleKeepsAcknowledged races writers of distinct keys against
// a request that cycles the id: every write whose Commit reported Saved
// under the old token must be in the cycled session, and nothing may be
// stored under the old id afterwards.
func testSessionCycleKeepsAcknowledged(t *testing.T, s core.Store) {
	ctx := context.Background()
	for round := range 5 {
		_, token := newSession(t, s)
		var (
			mu    sync.Mutex
			acked []string
			wg    sync.WaitGroup
			stop  atomic.Bool
		)
		for w := range 4 {
			wg.Go(func() {
				// A bounded number of writes, each followed by a yield:
				// on a single-threaded runtime (wasip1) without preemption,
				// writers that never block would starve the login goroutine
				// and grow the session until memory runs out.
				for j := 0; j < 2000 && !stop.Load(); j++ {
					runtime.Gosched()
					sess := core.NewSession(s, token, nil)
					key := fmt.Sprintf("g%d-%d", w, j)
					if err := sess.Insert(ctx, key, j); err != nil {
						t.Error(err)
						return
					}
					res, err := sess.Commit(ctx)
					if err == nil && res == core.Saved && sess.Token().String() == token {
						mu.Lock()
						acked = append(acked, key)
						mu.Unlock()
					} else if err != nil && !errors.Is(err, core.ErrSuperseded) {
						t.Error(err)
						return
					}
				}
			})
		}
		// halt stops the writers before failing, so none outlives the test.
		halt := func(err error) {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		login := core.NewSession(s, token, nil)
		if _, err := login.Keys(ctx); err != nil {
			halt(err)
		}
		time.Sleep(time.Duration(round) * 5 * time.Millisecond) // let writes land after the read
		if err := login.CycleID(ctx); err != nil {
			halt(err)
		}
		if err := login.Insert(ctx, "role", "admin"); err != nil {
			halt(err)
		}
		if res, err := login.Commit(ctx); err != nil || res != core.Saved {
			halt(fmt.Errorf("login Commit = %v, %v; want saved", res, err))
		}
		time.Sleep(5 * time.Millisecond) // writers keep trying with the old token
		stop.Store(true)
		wg.Wait()

		keys, err := core.NewSession(s, login.Token().String(), nil).Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, k := range acked {
			if _, ok := slices.BinarySearch(keys, k); !ok {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes are missing from the cycled session", round, missing, len(acked))
		}
		if rec := mustLoad(t, s, mustParse(t, token).ID(), now()); rec != nil {
			t.Fatalf("round %d: a write landed under the old id after CycleID: %d keys", round, len(rec.Data))
		}
	}
}

func testSessionSizeLimit(t *testing.T, s core.Store) {
	ctx := context.Background()
	big := strings.Repeat("x", core.DefaultMaxRecordSize)
	sess := core.NewSession(s, "", nil)
	if err := sess.Insert(ctx, "small", "ok"); err != nil {
		t.Fatal(err)
	}
	err := sess.Insert(ctx, "big", big)
	var tooLarge *core.RecordTooLargeError
	if !errors.As(err, &tooLarge) || !errors.Is(err, core.ErrRecordTooLarge) || tooLarge.Limit != core.DefaultMaxRecordSize ||
		!strings.Contains(err.Error(), fmt.Sprint(core.DefaultMaxRecordSize)) {
		t.Fatalf("Insert over the default limit = %v; want a *RecordTooLargeError naming %d", err, core.DefaultMaxRecordSize)
	}
	if keys, _ := sess.Keys(ctx); strings.Join(keys, ",") != "small" {
		t.Fatalf("a refused Insert changed the session: %v", keys)
	}
	commit(t, sess, core.Saved)

	// A raised limit stores what it allows, on every backend.
	opts := &core.Options{MaxRecordSize: 8 << 20}
	large := core.NewSession(s, "", opts)
	value := bytes.Repeat([]byte{0xA5}, 5<<20)
	if err := large.Insert(ctx, "blob", value); err != nil {
		t.Fatal(err)
	}
	commit(t, large, core.Saved)
	got, ok, err := core.Get[[]byte](ctx, core.NewSession(s, large.Token().String(), opts), "blob")
	if err != nil || !ok || !bytes.Equal(got, value) {
		t.Fatalf("5 MiB value: ok %v, err %v, equal %v", ok, err, bytes.Equal(got, value))
	}
}

func testSessionPresentedTokens(t *testing.T, s core.Store) {
	ctx := context.Background()
	_, valid := newSession(t, s)
	unknown := func(n int) []string {
		var out []string
		for range n {
			tok, err := core.NewToken(nil)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, tok.String())
		}
		return out
	}
	planted := append(append(unknown(8), "not a token"), unknown(5)...)
	sess := core.NewSessionFromTokens(s, append(planted, valid), nil)
	if v, ok, err := core.Get[string](ctx, sess, "seed"); err != nil || !ok || v != "value" {
		t.Fatalf("valid cookie after 14 planted ones: %q, %v, %v", v, ok, err)
	}
	if sess.Token().String() != valid {
		t.Fatal("the session is not the valid cookie's")
	}
	commit(t, sess, core.Unchanged)

	gone := core.NewSessionFromTokens(s, unknown(3), nil)
	if _, err := gone.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, gone, core.Removed)

	// Beyond the bound the valid cookie is not looked up, and not removed.
	far := core.NewSessionFromTokens(s, append(unknown(core.MaxPresentedTokens), valid), nil)
	if ok, err := far.Get(ctx, "seed", new(string)); ok || err != nil {
		t.Fatalf("Get = %v, %v; want absent", ok, err)
	}
	commit(t, far, core.Unchanged)
}

func testSessionMaxLifetime(t *testing.T, s core.Store) {
	ctx := context.Background()
	clock := now()
	opts := &core.Options{Expiry: core.OnInactivity(10 * time.Minute), MaxLifetime: 30 * time.Minute, Now: func() time.Time { return clock }}
	sess := core.NewSession(s, "", opts)
	if err := sess.Insert(ctx, "n", 0); err != nil {
		t.Fatal(err)
	}
	commit(t, sess, core.Saved)
	created := clock
	token := sess.Token().String()
	if got, err := sess.Created(ctx); err != nil || !got.Equal(created) {
		t.Fatalf("Created = %v, %v; want %v", got, err, created)
	}
	for i := 1; i <= 5; i++ { // active every 5 minutes: inactivity never ends it
		clock = created.Add(time.Duration(i) * 5 * time.Minute)
		next := core.NewSession(s, token, opts)
		if _, err := core.Update(ctx, next, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
			t.Fatal(err)
		}
		if i == 4 { // log-in: a new id keeps the creation time
			if err := next.CycleID(ctx); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, next, core.Saved)
		token = next.Token().String()
		rec := mustLoad(t, s, next.ID(), clock)
		want := clock.Add(10 * time.Minute)
		if limit := created.Add(30 * time.Minute); limit.Before(want) {
			want = limit
		}
		if rec == nil || rec.Expiry.After(want) || !rec.Created.Equal(created) {
			t.Fatalf("at +%dm the record is %+v; want created %v, expiry at most %v", i*5, rec, created, want)
		}
		if age, ok := next.MaxAge(clock); !ok || time.Duration(age)*time.Second > created.Add(30*time.Minute).Sub(clock) {
			t.Fatalf("at +%dm Max-Age = %d, %v: outlives the cap", i*5, age, ok)
		}
	}
	clock = created.Add(30*time.Minute + time.Second)
	if ok, err := core.NewSession(s, token, opts).Get(ctx, "n", new(int)); ok || err != nil {
		t.Fatalf("session served after its absolute cap: %v, %v", ok, err)
	}
}

func testSessionUser(t *testing.T, s core.Store) {
	ctx := context.Background()
	user := userID(t)
	login := core.NewSession(s, "", nil)
	if err := login.Insert(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := login.SetUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	commit(t, login, core.Saved)
	if rec := mustLoad(t, s, login.ID(), now()); rec == nil || rec.User != user {
		t.Fatalf("stored user = %+v, want %q", rec, user)
	}
	// A concurrent write of another key keeps the binding, and a write
	// that replays after a conflict keeps its own.
	a := core.NewSession(s, login.Token().String(), nil)
	b := core.NewSession(s, login.Token().String(), nil)
	if err := a.SetUser(ctx, user+"-renamed"); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(ctx, "other", 1); err != nil {
		t.Fatal(err)
	}
	commit(t, b, core.Saved)
	commit(t, a, core.Saved)
	c := core.NewSession(s, login.Token().String(), nil)
	if got, err := c.User(ctx); err != nil || got != user+"-renamed" {
		t.Fatalf("user = %q, %v", got, err)
	}
	if ok, _ := c.Get(ctx, "other", new(int)); !ok {
		t.Fatal("the concurrent write was lost")
	}
}

func testTake(t *testing.T, s core.Store) {
	ctx := context.Background()
	rec := newRecord(t, s, now().Add(time.Hour), "k", "v")
	rec.Created, rec.User = now(), "someone"
	mustCreate(t, s, rec)
	upd := rec.Clone()
	upd.Data["k2"] = enc(t, s, 2)
	if err := s.Save(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got, err := s.Take(ctx, rec.ID, now())
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, upd)
	if mustLoad(t, s, rec.ID, now()) != nil {
		t.Fatal("record still stored after Take")
	}
	if got, err := s.Take(ctx, rec.ID, now()); got != nil || err != nil {
		t.Fatalf("second Take = %+v, %v; want nil, nil", got, err)
	}
	if got, err := s.Take(ctx, newID(t), now()); got != nil || err != nil {
		t.Fatalf("Take of an unknown id = %+v, %v; want nil, nil", got, err)
	}
	old := newRecord(t, s, now().Add(-time.Second), "k", "v")
	mustCreate(t, s, old)
	if got, err := s.Take(ctx, old.ID, now()); got != nil || err != nil {
		t.Fatalf("Take of an expired record = %+v, %v; want nil, nil", got, err)
	}
}

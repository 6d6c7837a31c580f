package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// ErrTooManyConflicts is returned by Commit when every attempt to save met a
// newer write; Options.MaxConflictRetries bounds the attempts.
var ErrTooManyConflicts = errors.New("sqlsessions: session save kept conflicting with concurrent writes")

// Defaults used where Options leaves a field zero.
const (
	DefaultMaxConflictRetries = 100
	maxCreateAttempts         = 8
)

// Options configure the sessions a Session handle manages. The zero value
// works: sessions end with the browser session, the clock is time.Now, tokens
// come from crypto/rand.
type Options struct {
	// Expiry is the default expiry of every session; a handler may change it
	// per session with SetExpiry. Zero value: OnSessionEnd.
	Expiry Expiry

	// SessionEndLifetime is how long a record with an OnSessionEnd expiry is
	// kept. Zero: DefaultSessionEndLifetime (two weeks, as the seed).
	SessionEndLifetime time.Duration

	// AlwaysSave writes the session at every request that carries a valid
	// session, even when nothing changed, so an OnInactivity expiry is renewed
	// by reads too. It costs a load and a save per request. Default false.
	AlwaysSave bool

	// MaxConflictRetries bounds the reload-and-replay rounds of one Commit.
	// Zero: DefaultMaxConflictRetries.
	MaxConflictRetries int

	// Now is the clock; nil means time.Now. Times are used in UTC.
	Now func() time.Time

	// Rand is the source of session tokens; nil means crypto/rand. Only
	// tests have a reason to change it.
	Rand io.Reader

	// Logger receives reports of corrupt records and dropped changes; nil
	// means slog.Default(). Tokens are never logged.
	Logger *slog.Logger
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// CommitResult tells the caller of Commit what to do with the cookie.
type CommitResult uint8

const (
	// Unchanged: nothing was written; set no cookie.
	Unchanged CommitResult = iota
	// Saved: the session was written; send a cookie with Token().
	Saved
	// Removed: the client presented a session that no longer exists
	// (flushed, emptied, unknown, expired or malformed); remove its cookie.
	Removed
	// Superseded: another request deleted or cycled this session while this
	// one ran; this request's changes were dropped (never written back under
	// the old id) and no cookie should be sent, so the other request's cookie
	// stands.
	Superseded
)

func (r CommitResult) String() string {
	switch r {
	case Saved:
		return "saved"
	case Removed:
		return "removed"
	case Superseded:
		return "superseded"
	default:
		return "unchanged"
	}
}

// Session is one request's view of a session. It is lazy: creating it costs
// nothing, the first read loads the record (one store call), and Commit
// writes it only if something changed (one more). It is safe for concurrent
// use by the goroutines of one request.
type Session struct {
	mu    sync.Mutex
	store Store
	codec Codec
	opts  *Options

	token     Token
	id        ID   // token.ID(), computed on first use (storeID)
	presented bool // the client sent a session value (valid or not)

	loaded  bool
	rec     *Record // the stored record this request builds on; nil if none
	data    map[string][]byte
	changes map[string][]byte // this request's writes: nil value = removed

	expiry    Expiry
	modified  bool
	destroyed bool // flushed or found absent: the client's cookie must go
}

// NewSession returns the Session named by presented, the session value the
// client sent ("" when it sent none). A malformed value counts as a session
// that does not exist. opts may be nil; it must not change afterwards.
func NewSession(store Store, presented string, opts *Options) *Session {
	if opts == nil {
		opts = &Options{}
	}
	s := &Session{store: store, codec: store.Codec(), opts: opts, expiry: opts.Expiry}
	if presented != "" {
		s.presented = true
		if t, err := ParseToken(presented); err == nil {
			s.setToken(t)
		} else {
			s.destroyed = true
		}
	}
	return s
}

func (s *Session) setToken(t Token) {
	s.token, s.id = t, ""
}

// storeID returns the store key of the current token, hashing it once: an
// untouched session never pays for it.
func (s *Session) storeID() ID {
	if s.id == "" && !s.token.IsZero() {
		s.id = s.token.ID()
	}
	return s.id
}

// load reads the record once. The caller holds s.mu.
func (s *Session) load(ctx context.Context) error {
	if s.loaded {
		return nil
	}
	if s.token.IsZero() {
		s.loaded, s.data = true, map[string][]byte{}
		return nil
	}
	rec, err := s.store.Load(ctx, s.storeID(), s.opts.now())
	if errors.Is(err, ErrCorruptRecord) {
		s.opts.logger().WarnContext(ctx, "sqlsessions: ignoring a session record that cannot be decoded",
			"id", s.id, "error", err)
		rec, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("sqlsessions: loading session: %w", err)
	}
	s.loaded = true
	if rec == nil {
		// Unknown or expired: never adopt the client's token for a new
		// session (that would allow fixation); Commit draws a new one.
		s.setToken(Token{})
		s.destroyed = true
		s.data = map[string][]byte{}
		return nil
	}
	s.adopt(rec)
	return nil
}

func (s *Session) record(key string, v []byte) {
	if s.changes == nil {
		s.changes = map[string][]byte{}
	}
	s.changes[key] = v
	s.modified = true
}

// Get decodes the value of key into dst, a pointer, and reports whether the
// key was present.
func (s *Session) Get(ctx context.Context, key string, dst any) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(ctx, key, dst)
}

// get is Get with s.mu held.
func (s *Session) get(ctx context.Context, key string, dst any) (bool, error) {
	if err := s.load(ctx); err != nil {
		return false, err
	}
	v, ok := s.data[key]
	if !ok {
		return false, nil
	}
	if err := s.codec.Unmarshal(v, dst); err != nil {
		return true, fmt.Errorf("sqlsessions: decoding session key %q: %w", key, err)
	}
	return true, nil
}

// Get returns the value of key decoded as a T, and whether it was present.
func Get[T any](ctx context.Context, s *Session, key string) (T, bool, error) {
	var v T
	ok, err := s.Get(ctx, key, &v)
	return v, ok, err
}

// Insert sets key to value. The value is encoded at once, so a value the
// codec cannot encode is an error here and changes nothing. Setting a key to
// the value it already has does not modify the session.
func (s *Session) Insert(ctx context.Context, key string, value any) error {
	enc, err := s.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("sqlsessions: encoding session key %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	if old, ok := s.data[key]; ok && bytes.Equal(old, enc) {
		return nil
	}
	s.data[key] = enc
	s.record(key, enc)
	return nil
}

// Remove deletes key and reports whether it was present.
func (s *Session) Remove(ctx context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return false, err
	}
	if _, ok := s.data[key]; !ok {
		return false, nil
	}
	delete(s.data, key)
	s.record(key, nil)
	return true, nil
}

// Pop decodes the value of key into dst and removes it; it reports whether
// the key was present. If decoding fails the key is kept.
func (s *Session) Pop(ctx context.Context, key string, dst any) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.get(ctx, key, dst)
	if ok && err == nil {
		delete(s.data, key)
		s.record(key, nil)
	}
	return ok, err
}

// Clear removes every key. The session keeps its id; if nothing is inserted
// afterwards, Commit deletes it. Against concurrent requests it counts as
// removing the keys this request saw: keys another request adds meanwhile
// survive.
func (s *Session) Clear(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	for k := range s.data {
		s.record(k, nil)
	}
	clear(s.data)
	return nil
}

// Flush deletes the session from the store at once and forgets it: the
// client's cookie is removed at Commit. Values inserted afterwards start a new
// session with a new id.
func (s *Session) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.token.IsZero() {
		if err := s.store.Delete(ctx, s.storeID()); err != nil {
			return fmt.Errorf("sqlsessions: deleting session: %w", err)
		}
	}
	s.setToken(Token{})
	s.rec = nil
	s.loaded, s.data = true, map[string][]byte{}
	s.changes, s.modified = nil, false
	s.destroyed = s.destroyed || s.presented
	return nil
}

// CycleID gives the session a new id, keeping its data, and deletes the old
// record at once so the old token stops working immediately. Call it when
// privileges change (log in, log out) to defeat session fixation.
func (s *Session) CycleID(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	if s.rec != nil {
		if err := s.store.Delete(ctx, s.rec.ID); err != nil {
			return fmt.Errorf("sqlsessions: deleting old session id: %w", err)
		}
	}
	s.setToken(Token{})
	s.rec = nil
	s.destroyed = s.destroyed || s.presented
	s.modified = true
	return nil
}

// Keys returns the session's keys, sorted.
func (s *Session) Keys(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(s.data)), nil
}

// IsEmpty reports whether the session holds no keys.
func (s *Session) IsEmpty(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return false, err
	}
	return len(s.data) == 0, nil
}

// Expiry returns the session's expiry: the one set with SetExpiry, else the
// configured default.
func (s *Session) Expiry() Expiry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiry
}

// SetExpiry changes this session's expiry and marks it modified, so the
// record and the cookie are rewritten with the new deadline.
func (s *Session) SetExpiry(e Expiry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry = e
	s.modified = true
}

// ExpiresAt is the deadline the record gets if it is saved now.
func (s *Session) ExpiresAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiry.Deadline(s.opts.now(), s.opts.SessionEndLifetime)
}

// ID returns the store key of the session ("" while it has none: a new
// session gets one at Commit). Unlike the token it is safe to log.
func (s *Session) ID() ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeID()
}

// Token returns the session's token, the secret the cookie carries; it is
// the zero Token while the session has none.
func (s *Session) Token() Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Modified reports whether the session has changes that Commit would write.
func (s *Session) Modified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modified
}

// Commit writes the session if it changed (or always, with AlwaysSave) and
// tells the caller what to do with the cookie. It may be called again after
// further changes. A save that meets a concurrent write reloads the record
// and replays only the keys this request set or removed.
func (s *Session) Commit(ctx context.Context) (CommitResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if !s.modified {
		if !s.opts.AlwaysSave || s.token.IsZero() {
			return s.unchanged(), nil
		}
		if err := s.load(ctx); err != nil {
			return Unchanged, err
		}
		if s.rec == nil {
			return s.unchanged(), nil
		}
	}
	// A session modified without being read (SetExpiry alone) still needs
	// its record: the save builds on it.
	if err := s.load(ctx); err != nil {
		return Unchanged, err
	}
	now := s.opts.now()
	if s.rec == nil {
		if len(s.data) == 0 {
			s.modified = false
			return s.unchanged(), nil
		}
		return s.create(ctx, now)
	}
	return s.save(ctx, now)
}

// unchanged reports the cookie action when nothing is written: a client
// whose session is known to be gone gets its cookie removed, once.
func (s *Session) unchanged() CommitResult {
	if s.destroyed && s.presented && s.token.IsZero() {
		s.presented = false
		return Removed
	}
	return Unchanged
}

func (s *Session) create(ctx context.Context, now time.Time) (CommitResult, error) {
	for range maxCreateAttempts {
		tok, err := NewToken(s.opts.Rand)
		if err != nil {
			return Unchanged, err
		}
		rec := &Record{ID: tok.ID(), Data: s.data, Expiry: s.expiry.Deadline(now, s.opts.SessionEndLifetime)}
		err = s.store.Create(ctx, rec)
		if errors.Is(err, ErrCollision) {
			continue
		}
		if err != nil {
			return Unchanged, fmt.Errorf("sqlsessions: creating session: %w", err)
		}
		s.token, s.id = tok, rec.ID
		rec.Data = nil // s.data stays the live copy
		s.rec = rec
		s.settle()
		return Saved, nil
	}
	return Unchanged, fmt.Errorf("sqlsessions: creating session: %d id collisions in a row: %w", maxCreateAttempts, ErrCollision)
}

func (s *Session) save(ctx context.Context, now time.Time) (CommitResult, error) {
	retries := s.opts.MaxConflictRetries
	if retries <= 0 {
		retries = DefaultMaxConflictRetries
	}
	for attempt := 0; ; attempt++ {
		rec := &Record{ID: s.rec.ID, Data: s.data, Expiry: s.expiry.renewed(s.rec.Expiry, now, s.opts.SessionEndLifetime), Version: s.rec.Version}
		err := s.store.Save(ctx, rec)
		if err == nil {
			s.settle()
			if len(rec.Data) == 0 {
				s.setToken(Token{})
				s.rec, s.destroyed = nil, true
				return s.unchanged(), nil
			}
			rec.Data = nil
			s.rec = rec
			return Saved, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Unchanged, fmt.Errorf("sqlsessions: saving session: %w", err)
		}
		if attempt >= retries {
			return Unchanged, ErrTooManyConflicts
		}
		if err := backoff(ctx, attempt); err != nil {
			return Unchanged, err
		}
		now = s.opts.now()
		var fresh *Record
		if ce := (*ConflictError)(nil); errors.As(err, &ce) && ce.Current != nil && ce.Current.ID == s.rec.ID &&
			ce.Current.Version > s.rec.Version && !ce.Current.Expired(now) {
			// The store told us the newer record: no reload. A stale hint
			// only costs another conflict, reloaded for real below.
			fresh = ce.Current
		} else {
			fresh, err = s.store.Load(ctx, s.rec.ID, now)
			if err != nil && !errors.Is(err, ErrCorruptRecord) {
				return Unchanged, fmt.Errorf("sqlsessions: reloading session after a conflict: %w", err)
			}
		}
		if fresh == nil {
			// Deleted or cycled by another request: do not resurrect it.
			s.opts.logger().DebugContext(ctx, "sqlsessions: session was deleted concurrently; dropping this request's changes",
				"id", s.rec.ID)
			s.setToken(Token{})
			s.rec = nil
			s.data = map[string][]byte{}
			s.settle()
			return Superseded, nil
		}
		s.replay(fresh)
	}
}

// adopt makes a loaded record (which the caller owns, per the Store
// contract) the base of this session: its data becomes the live copy.
func (s *Session) adopt(rec *Record) {
	s.data = rec.Data
	if s.data == nil {
		s.data = map[string][]byte{}
	}
	rec.Data = nil
	s.rec = rec
}

// replay rebuilds the data from a fresh record and this request's changes.
func (s *Session) replay(fresh *Record) {
	s.adopt(fresh)
	for k, v := range s.changes {
		if v == nil {
			delete(s.data, k)
		} else {
			s.data[k] = v
		}
	}
}

// settle forgets the changes once they are stored.
func (s *Session) settle() {
	s.changes, s.modified = nil, false
}

// retryDelay is how long a save waits before reloading after its attempt-th
// conflict (0-based). The first reload is immediate: the write that beat
// this one has committed (its version is what failed the condition), so
// there is nothing to wait for. Later ones back off, more after each, with
// jitter so requests that keep colliding spread out.
func retryDelay(attempt int) time.Duration {
	if attempt == 0 {
		return 0
	}
	limit := time.Duration(100<<min(attempt-1, 9)) * time.Microsecond
	return rand.N(limit) + time.Microsecond
}

// backoff waits retryDelay(attempt), or until ctx ends.
func backoff(ctx context.Context, attempt int) error {
	d := retryDelay(attempt)
	if d == 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

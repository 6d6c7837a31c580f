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
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults used where Options leaves a field zero.
const (
	DefaultMaxConflictRetries = 100
	// DefaultMaxRecordSize is the default Options.MaxRecordSize: 1 MiB of
	// keys and encoded values, far above what sessions hold and far below
	// MariaDB's default max_allowed_packet (16 MiB), so that every backend
	// refuses the same records with the same error.
	DefaultMaxRecordSize = 1 << 20
	// MaxPresentedTokens bounds how many distinct well-formed tokens one
	// request may make a Session look up (see NewSessionFromTokens).
	MaxPresentedTokens = 16
	// MaxUserLen is the longest user key SetUser accepts, in bytes: every
	// store indexes it (MySQL as VARBINARY(255)).
	MaxUserLen        = 255
	maxCreateAttempts = 8
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

	// MaxLifetime caps every session at this long after it was created,
	// whatever its expiry and however active it is (OWASP's absolute
	// timeout): with OnInactivity(30*time.Minute) and MaxLifetime
	// 12*time.Hour, a session ends after 30 idle minutes or 12 hours after
	// log-in, whichever comes first. The cookie's Max-Age never outlives the
	// cap. CycleID keeps the creation time, so renewing the id does not
	// extend the cap; Flush and a new session start a new one. Zero: no cap.
	MaxLifetime time.Duration

	// AlwaysSave writes the session at every request that carries a valid
	// session, even when nothing changed, so an OnInactivity expiry is renewed
	// by reads too. It costs a load and a save per request. Default false.
	AlwaysSave bool

	// MaxConflictRetries bounds the reload-and-replay rounds of one Commit.
	// Zero: DefaultMaxConflictRetries.
	MaxConflictRetries int

	// MaxRecordSize bounds a session's data, in bytes of keys plus encoded
	// values: Insert and Update refuse a change that would exceed it, with a
	// *RecordTooLargeError naming the limit, and leave the session as it
	// was. Raise it if you keep large values in sessions (and check your
	// database's own limit, e.g. MariaDB's max_allowed_packet). Zero:
	// DefaultMaxRecordSize; negative: no limit.
	MaxRecordSize int

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

func (o *Options) maxRecordSize() int {
	if o.MaxRecordSize == 0 {
		return DefaultMaxRecordSize
	}
	return o.MaxRecordSize
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
	// the old id; Commit also returns ErrSuperseded if there were any) and
	// no cookie should be sent, so the other request's cookie stands.
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

// rawUpdate is a read-modify-write of one encoded value; see Update.
type rawUpdate func(old []byte, found bool) ([]byte, error)

// change is what this request did to one key, replayed on a newer record
// when a save conflicts: set (with val, nil meaning removed) replaces the
// stored value, then each update runs again on the result.
type change struct {
	set     bool
	val     []byte
	updates []rawUpdate
}

// Session is one request's view of a session. It is lazy: creating it costs
// nothing, the first read loads the record (one store call), and Commit
// writes it only if something changed (one more). It is safe for concurrent
// use by the goroutines of one request.
//
// What concurrent requests on one session can rely on:
//   - Changes to different keys never overwrite each other: a save is
//     conditional on the version it read, and a conflict reloads the record
//     and replays only this request's changes.
//   - Update is an atomic read-modify-write of one key: its function runs
//     again on the newer value after a conflict, so N concurrent increments
//     add exactly N.
//   - Insert and Remove of the same key by two requests: the one that
//     commits last wins (its value was decided without reading the other's).
//   - A session deleted (Flush, revocation) or cycled by one request is never
//     written back under its old id by another: the other's changes are
//     dropped and its Commit returns ErrSuperseded.
//   - CycleID moves every change committed before it to the new id.
//
// Every method of a nil *Session returns ErrNoSession (or a zero value).
type Session struct {
	mu    sync.Mutex
	store Store
	codec Codec
	opts  *Options

	token     Token
	id        ID   // token.ID(), computed on first use (storeID)
	presented bool // the client sent a session value (valid or not)
	// candidates are the well-formed tokens the client presented and load
	// has not examined yet, in order; unexamined says the client presented
	// more than MaxPresentedTokens of them, so a valid one may remain.
	candidates []Token
	unexamined bool

	loaded  bool
	rec     *Record // the stored record this request builds on; nil if none
	data    map[string][]byte
	size    int // dataSize(data)
	changes map[string]*change
	created time.Time // the session's creation time: rec's, or kept across CycleID
	user    string
	userSet bool // SetUser was called: user is this request's change

	expiry    Expiry
	modified  bool
	destroyed bool // flushed or found absent: the client's cookie must go
}

// NewSession returns the Session named by presented, the session value the
// client sent ("" when it sent none). A malformed value counts as a session
// that does not exist. opts may be nil; it must not change afterwards.
func NewSession(store Store, presented string, opts *Options) *Session {
	if presented == "" {
		return NewSessionFromTokens(store, nil, opts)
	}
	return NewSessionFromTokens(store, []string{presented}, opts)
}

// NewSessionFromTokens returns the Session named by the first of presented
// that names a live session: presented holds every session value the client
// sent (several cookies of one name can reach a server, for instance when a
// sibling subdomain planted some), in the order sent. The Session looks the
// distinct well-formed tokens up lazily, in order, at most
// MaxPresentedTokens of them. Commit reports Removed (remove the client's
// cookie) only if every value was examined and none names a session, so a
// valid cookie is never removed because of others sent before it.
func NewSessionFromTokens(store Store, presented []string, opts *Options) *Session {
	if opts == nil {
		opts = &Options{}
	}
	s := &Session{store: store, codec: store.Codec(), opts: opts, expiry: opts.Expiry}
	for _, v := range presented {
		if v == "" {
			continue
		}
		s.presented = true
		t, err := ParseToken(v)
		if err != nil || slices.ContainsFunc(s.candidates, t.Equal) {
			continue
		}
		if len(s.candidates) == MaxPresentedTokens {
			s.unexamined = true
			continue
		}
		s.candidates = append(s.candidates, t)
	}
	switch {
	case len(s.candidates) > 0:
		// Before loading, the session is named by its first candidate.
		s.setToken(s.candidates[0])
	case s.presented:
		s.destroyed = true
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

// load reads the record once: the first presented token that names a live
// session. The caller holds s.mu.
func (s *Session) load(ctx context.Context) error {
	if s.loaded {
		return nil
	}
	now := s.opts.now()
	for len(s.candidates) > 0 {
		s.setToken(s.candidates[0])
		rec, err := s.store.Load(ctx, s.storeID(), now)
		if errors.Is(err, ErrCorruptRecord) {
			s.opts.logger().WarnContext(ctx, "sqlsessions: ignoring a session record that cannot be read",
				"id", s.id, "error", err)
			rec, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("sqlsessions: loading session: %w", err)
		}
		s.candidates = s.candidates[1:]
		if rec != nil {
			s.candidates = nil
			s.loaded = true
			s.adopt(rec)
			return nil
		}
	}
	// Unknown or expired: never adopt the client's token for a new session
	// (that would allow fixation); Commit draws a new one.
	s.loaded = true
	s.setToken(Token{})
	s.data = map[string][]byte{}
	s.size = 0
	if s.presented && !s.unexamined {
		s.destroyed = true
	}
	return nil
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
	s.size = dataSize(s.data)
	s.created = rec.Created
	if !s.userSet {
		s.user = rec.User
	}
}

// change returns the record of this request's changes to key.
func (s *Session) change(key string) *change {
	if s.changes == nil {
		s.changes = map[string]*change{}
	}
	c := s.changes[key]
	if c == nil {
		c = &change{}
		s.changes[key] = c
	}
	s.modified = true
	return c
}

// set records that this request set key to v (nil: removed it).
func (s *Session) set(key string, v []byte) {
	c := s.change(key)
	c.set, c.val, c.updates = true, v, nil
}

// fits checks that setting key from old (absent: nil) to v keeps the data
// within the size limit, and returns the new size. Changes that shrink the
// data always fit, so a session over a lowered limit can still be cut down.
func (s *Session) fits(key string, old []byte, found bool, v []byte) (int, error) {
	size := s.size + len(v) - len(old)
	if !found {
		size += len(key)
	}
	if limit := s.opts.maxRecordSize(); limit > 0 && size > limit && size > s.size {
		return 0, &RecordTooLargeError{Key: key, Size: size, Limit: limit}
	}
	return size, nil
}

// Get decodes the value of key into dst, a pointer, and reports whether the
// key was present.
func (s *Session) Get(ctx context.Context, key string, dst any) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
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

// checkKey refuses keys the codec cannot store faithfully.
func (s *Session) checkKey(key string) error {
	if kv, ok := s.codec.(KeyValidator); ok {
		if err := kv.ValidKey(key); err != nil {
			return fmt.Errorf("sqlsessions: session key %q: %w", key, err)
		}
	}
	return nil
}

// Insert sets key to value. The value is encoded at once, so a value the
// codec cannot encode is an error here and changes nothing; so is a change
// that would make the session larger than Options.MaxRecordSize. Setting a
// key to the value it already has does not modify the session.
//
// Insert decides the value without regard to what concurrent requests
// store under the same key: of two requests inserting one key, the last to
// commit wins. To change a value based on the current one (a counter, a
// cart), use Update.
func (s *Session) Insert(ctx context.Context, key string, value any) error {
	if s == nil {
		return ErrNoSession
	}
	if err := s.checkKey(key); err != nil {
		return err
	}
	enc, err := s.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("sqlsessions: encoding session key %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	old, found := s.data[key]
	if found && bytes.Equal(old, enc) {
		return nil
	}
	size, err := s.fits(key, old, found, enc)
	if err != nil {
		return err
	}
	s.data[key], s.size = enc, size
	s.set(key, enc)
	return nil
}

// Update is an atomic read-modify-write of key: fn receives the current
// value decoded as a T (the zero T and found false when absent) and returns
// the new value, which Update stores as Insert does and returns. If the
// session's save at Commit meets a concurrent write, fn runs again on the
// newer value before the save is retried, so concurrent Updates of one key
// never lose each other: N concurrent increments add exactly N.
//
// fn may therefore run more than once and must not have side effects beyond
// computing the new value; its error aborts Update (nothing changes) or, in
// a rerun, Commit. The value Update returns is fn's first result: a request
// that shows it (as the examples' counter page does) may show a value that a
// concurrent request also showed, while the stored total stays exact.
func Update[T any](ctx context.Context, s *Session, key string, fn func(old T, found bool) (T, error)) (T, error) {
	var result T
	if s == nil {
		return result, ErrNoSession
	}
	first := true
	err := s.update(ctx, key, func(old []byte, found bool) ([]byte, error) {
		var v T
		if found {
			if err := s.codec.Unmarshal(old, &v); err != nil {
				return nil, fmt.Errorf("sqlsessions: decoding session key %q: %w", key, err)
			}
		}
		nv, err := fn(v, found)
		if err != nil {
			return nil, err
		}
		enc, err := s.codec.Marshal(nv)
		if err != nil {
			return nil, fmt.Errorf("sqlsessions: encoding session key %q: %w", key, err)
		}
		if first {
			result, first = nv, false
		}
		return enc, nil
	})
	return result, err
}

// update applies fn to key now and records it for replay.
func (s *Session) update(ctx context.Context, key string, fn rawUpdate) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	old, found := s.data[key]
	enc, err := fn(old, found)
	if err != nil {
		return err
	}
	if found && bytes.Equal(old, enc) {
		return nil
	}
	size, err := s.fits(key, old, found, enc)
	if err != nil {
		return err
	}
	s.data[key], s.size = enc, size
	c := s.change(key)
	c.updates = append(c.updates, fn)
	return nil
}

// Remove deletes key and reports whether it was present.
func (s *Session) Remove(ctx context.Context, key string) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return false, err
	}
	return s.remove(key), nil
}

func (s *Session) remove(key string) bool {
	old, ok := s.data[key]
	if !ok {
		return false
	}
	delete(s.data, key)
	s.size -= len(key) + len(old)
	s.set(key, nil)
	return true
}

// Pop decodes the value of key into dst and removes it; it reports whether
// the key was present. If decoding fails the key is kept.
func (s *Session) Pop(ctx context.Context, key string, dst any) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.get(ctx, key, dst)
	if ok && err == nil {
		s.remove(key)
	}
	return ok, err
}

// Clear removes every key. The session keeps its id; if nothing is inserted
// afterwards, Commit deletes it. Against concurrent requests it counts as
// removing the keys this request saw: keys another request adds meanwhile
// survive.
func (s *Session) Clear(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	for k := range s.data {
		s.set(k, nil)
	}
	clear(s.data)
	s.size = 0
	return nil
}

// Load reads the session from the store now, if it has not been read yet
// (every other method loads it when needed; tower-sessions' Session::load).
func (s *Session) Load(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(ctx)
}

// Flush deletes the session from the store at once and forgets it: the
// client's cookie is removed at Commit. Values inserted afterwards start a new
// session with a new id.
func (s *Session) Flush(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteRecord(ctx); err != nil {
		return err
	}
	s.data, s.size = map[string][]byte{}, 0
	s.changes, s.modified = nil, false
	s.user, s.userSet = "", false
	return nil
}

// Delete deletes the session from the store at once, like Flush, but keeps
// its data in this request: reads still see it, and a change made afterwards
// saves it as a new session with a new id (tower-sessions'
// Session::delete). Without a later change the client's cookie is removed.
func (s *Session) Delete(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	if err := s.deleteRecord(ctx); err != nil {
		return err
	}
	s.changes, s.modified = nil, false
	return nil
}

// deleteRecord deletes the stored record unconditionally (a log-out wins
// over concurrent writes) and forgets the token. Without a load, a single
// presented token is deleted directly: one statement.
func (s *Session) deleteRecord(ctx context.Context) error {
	if !s.loaded && len(s.candidates) > 1 {
		if err := s.load(ctx); err != nil {
			return err
		}
	}
	if id := s.storeID(); id != "" {
		if err := s.store.Delete(ctx, id); err != nil {
			return fmt.Errorf("sqlsessions: deleting session: %w", err)
		}
	}
	if !s.loaded {
		s.loaded, s.data = true, map[string][]byte{}
	}
	s.setToken(Token{})
	s.candidates = nil
	s.rec, s.created = nil, time.Time{}
	s.destroyed = s.destroyed || s.presented
	return nil
}

// CycleID gives the session a new id, keeping its data, and deletes the old
// record at once so the old token stops working immediately. Call it when
// privileges change (log in, log out) to defeat session fixation.
//
// The old record is removed and read in one step (Store.Take), and this
// request's changes are replayed on what it held, so every change committed
// under the old id before the cycle moves to the new one; a request still
// writing under the old id afterwards gets ErrSuperseded. If the session
// was deleted or cycled concurrently, CycleID returns ErrSuperseded and the
// session is left empty. The new record is written at Commit, with the
// session's creation time kept (see Options.MaxLifetime).
func (s *Session) CycleID(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	return s.cycle(ctx)
}

// cycle takes the loaded record out of the store, replays this request's
// changes on its last state, and leaves the session to be created under a
// new token at Commit.
func (s *Session) cycle(ctx context.Context) error {
	if s.rec != nil {
		last, err := s.store.Take(ctx, s.rec.ID, s.opts.now())
		if errors.Is(err, ErrCorruptRecord) {
			last, err = nil, nil // removed, and unreadable: as if deleted
		}
		if err != nil {
			return fmt.Errorf("sqlsessions: removing the old session id: %w", err)
		}
		if last == nil {
			s.supersede(ctx)
			return ErrSuperseded
		}
		// The old record is gone: even if an update fails to replay, the
		// session moves on with the last state, so it is not lost with it.
		err = s.replay(last)
		s.moveToNewID()
		return err
	}
	s.moveToNewID()
	return nil
}

// moveToNewID leaves the session to be created under a new token at Commit.
func (s *Session) moveToNewID() {
	s.setToken(Token{})
	s.rec = nil
	s.destroyed = s.destroyed || s.presented
	s.modified = true
}

// Keys returns the session's keys, sorted.
func (s *Session) Keys(ctx context.Context) ([]string, error) {
	if s == nil {
		return nil, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(s.data)), nil
}

// IsEmpty reports whether the session holds no keys.
func (s *Session) IsEmpty(ctx context.Context) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return false, err
	}
	return len(s.data) == 0, nil
}

// SetUser binds the session to a user key (your user's id, as a string), or
// unbinds it with "". Stores that implement UserStore index it, so that an
// application can list a user's sessions and revoke them (log out
// everywhere, or every device but this one). Call it at log-in, after
// CycleID. A user key is valid UTF-8 without NUL bytes (PostgreSQL text
// cannot hold them), at most MaxUserLen bytes.
func (s *Session) SetUser(ctx context.Context, user string) error {
	if s == nil {
		return ErrNoSession
	}
	if len(user) > MaxUserLen || !utf8.ValidString(user) || strings.IndexByte(user, 0) >= 0 {
		return fmt.Errorf("sqlsessions: SetUser: a user key must be valid UTF-8 without NUL bytes, at most %d bytes (got %d bytes)", MaxUserLen, len(user))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return err
	}
	if s.user == user {
		return nil
	}
	s.user, s.userSet, s.modified = user, true, true
	return nil
}

// User returns the user key the session is bound to ("" if none).
func (s *Session) User(ctx context.Context) (string, error) {
	if s == nil {
		return "", ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return "", err
	}
	return s.user, nil
}

// Created returns when the session was first stored: the zero time for a
// session not stored yet or stored before creation times were kept.
func (s *Session) Created(ctx context.Context) (time.Time, error) {
	if s == nil {
		return time.Time{}, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx); err != nil {
		return time.Time{}, err
	}
	return s.created, nil
}

// Expiry returns the session's expiry: the one set with SetExpiry, else the
// configured default.
func (s *Session) Expiry() Expiry {
	if s == nil {
		return Expiry{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiry
}

// SetExpiry changes this session's expiry and marks it modified, so the
// record and the cookie are rewritten with the new deadline.
func (s *Session) SetExpiry(e Expiry) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry = e
	s.modified = true
}

// ResetExpiry returns the session to the configured default expiry
// (Options.Expiry) after SetExpiry, and marks it modified.
func (s *Session) ResetExpiry() {
	if s == nil {
		return
	}
	s.SetExpiry(s.opts.Expiry)
}

// deadline is the expiry a record created at created and saved at now gets:
// the expiry's deadline (renewed from stored in steps, see Expiry), capped
// by Options.MaxLifetime.
func (s *Session) deadline(now time.Time, stored *Record) time.Time {
	var d time.Time
	if stored != nil {
		d = s.expiry.renewed(stored.Expiry, now, s.opts.SessionEndLifetime)
	} else {
		d = s.expiry.Deadline(now, s.opts.SessionEndLifetime)
	}
	if s.opts.MaxLifetime > 0 && !s.created.IsZero() {
		if limit := clampDeadline(s.created.Add(s.opts.MaxLifetime)); limit.Before(d) {
			d = limit
		}
	}
	return d
}

// ExpiresAt is the deadline the record gets if it is saved now.
func (s *Session) ExpiresAt() time.Time {
	if s == nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.now()
	created := s.created
	if created.IsZero() {
		created = now
	}
	return s.capped(s.expiry.Deadline(now, s.opts.SessionEndLifetime), created)
}

func (s *Session) capped(d, created time.Time) time.Time {
	if s.opts.MaxLifetime > 0 {
		if limit := clampDeadline(created.Add(s.opts.MaxLifetime)); limit.Before(d) {
			return limit
		}
	}
	return d
}

// ExpiryAge is how long the session has left if it is saved now (zero once
// that is past): tower-sessions' Session::expiry_age.
func (s *Session) ExpiryAge() time.Duration {
	if s == nil {
		return 0
	}
	left := s.ExpiresAt().Sub(s.opts.now())
	return max(left, 0)
}

// MaxAge is the cookie Max-Age for this session at now: ok is false for an
// OnSessionEnd expiry (a browser-session cookie); otherwise the whole
// seconds the session has left, which never exceed what Options.MaxLifetime
// leaves.
func (s *Session) MaxAge(now time.Time) (seconds int, ok bool) {
	if s == nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seconds, ok = s.expiry.MaxAge(now)
	if !ok || s.opts.MaxLifetime <= 0 {
		return seconds, ok
	}
	created := s.created
	if created.IsZero() {
		created = now
	}
	left := clampDeadline(created.Add(s.opts.MaxLifetime)).Sub(now)
	return max(0, min(seconds, int(left/time.Second))), true
}

// ID returns the store key of the session ("" while it has none: a new
// session gets one at Commit). Unlike the token it is safe to log.
func (s *Session) ID() ID {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeID()
}

// Token returns the session's token, the secret the cookie carries; it is
// the zero Token while the session has none.
func (s *Session) Token() Token {
	if s == nil {
		return Token{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Modified reports whether the session has changes that Commit would write.
func (s *Session) Modified() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modified
}

// Commit writes the session if it changed (or always, with AlwaysSave) and
// tells the caller what to do with the cookie. It may be called again after
// further changes. A save that meets a concurrent write reloads the record
// and replays only this request's changes (see Session); if the session was
// deleted or cycled meanwhile, the changes are dropped and Commit returns
// Superseded with ErrSuperseded.
func (s *Session) Commit(ctx context.Context) (CommitResult, error) {
	if s == nil {
		return Unchanged, ErrNoSession
	}
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
	if s.rec != nil && s.rec.Version >= MaxVersion {
		// No store can count further: move the data to a new id.
		if err := s.cycle(ctx); err != nil {
			if errors.Is(err, ErrSuperseded) {
				return Superseded, err
			}
			return Unchanged, err
		}
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

// checkSize refuses to write data over the size limit (a replay can merge
// a concurrent request's values into this one's).
func (s *Session) checkSize() error {
	if limit := s.opts.maxRecordSize(); limit > 0 && s.size > limit {
		return &RecordTooLargeError{Size: s.size, Limit: limit}
	}
	return nil
}

func (s *Session) create(ctx context.Context, now time.Time) (CommitResult, error) {
	if err := s.checkSize(); err != nil {
		return Unchanged, err
	}
	if s.created.IsZero() {
		s.created = now
	}
	for range maxCreateAttempts {
		tok, err := NewToken(s.opts.Rand)
		if err != nil {
			return Unchanged, err
		}
		rec := &Record{ID: tok.ID(), Data: s.data, Expiry: s.deadline(now, nil), Created: s.created, User: s.user}
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
	wasModified := s.modified
	for attempt := 0; ; attempt++ {
		if err := s.checkSize(); err != nil {
			return Unchanged, err
		}
		rec := &Record{ID: s.rec.ID, Data: s.data, Expiry: s.deadline(now, s.rec), Version: s.rec.Version,
			Created: s.rec.Created, User: s.user}
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
		gone, err := s.resolveConflict(ctx, err, attempt)
		if err != nil {
			return Unchanged, err
		}
		if gone {
			s.supersede(ctx)
			if wasModified {
				return Superseded, ErrSuperseded
			}
			return Superseded, nil
		}
		now = s.opts.now()
	}
}

// resolveConflict handles the attempt-th conflict (err) of a conditional
// write of s.rec: it backs off, takes the newer record (from the store's
// hint or a reload) and replays this request's changes on it. gone reports
// that the session no longer exists.
func (s *Session) resolveConflict(ctx context.Context, conflict error, attempt int) (gone bool, err error) {
	retries := s.opts.MaxConflictRetries
	if retries <= 0 {
		retries = DefaultMaxConflictRetries
	}
	if attempt >= retries {
		return false, ErrTooManyConflicts
	}
	if err := backoff(ctx, attempt); err != nil {
		return false, err
	}
	now := s.opts.now()
	var fresh *Record
	if ce := (*ConflictError)(nil); errors.As(conflict, &ce) && ce.Current != nil && ce.Current.ID == s.rec.ID &&
		ce.Current.Version > s.rec.Version && !ce.Current.Expired(now) {
		// The store told us the newer record: no reload. A stale hint
		// only costs another conflict, reloaded for real then.
		fresh = ce.Current
	} else {
		fresh, err = s.store.Load(ctx, s.rec.ID, now)
		if err != nil && !errors.Is(err, ErrCorruptRecord) {
			return false, fmt.Errorf("sqlsessions: reloading session after a conflict: %w", err)
		}
	}
	if fresh == nil {
		return true, nil
	}
	return false, s.replay(fresh)
}

// supersede drops this request's changes to a session another request
// deleted or cycled: it is never written back under its old id.
func (s *Session) supersede(ctx context.Context) {
	s.opts.logger().DebugContext(ctx, "sqlsessions: session was deleted or cycled concurrently; dropping this request's changes",
		"id", s.rec.ID)
	s.setToken(Token{})
	s.rec = nil
	s.data, s.size = map[string][]byte{}, 0
	s.user, s.userSet, s.created = "", false, time.Time{}
	s.settle()
}

// replay rebuilds the data from a fresh record and this request's changes:
// values it set or removed are set or removed again, and its updates run
// again on the fresh values.
//
// An update whose function fails leaves its key at the fresh value and
// makes replay return the (first) error after replaying every other key.
func (s *Session) replay(fresh *Record) error {
	s.adopt(fresh)
	var first error
	for k, c := range s.changes {
		cur, found := s.data[k]
		if c.set {
			cur, found = c.val, c.val != nil
		}
		for _, fn := range c.updates {
			v, err := fn(cur, found)
			if err != nil {
				if first == nil {
					first = fmt.Errorf("sqlsessions: updating session key %q again after a concurrent write: %w", k, err)
				}
				cur, found = s.data[k]
				break
			}
			cur, found = v, true
		}
		if found {
			s.data[k] = cur
		} else {
			delete(s.data, k)
		}
	}
	s.size = dataSize(s.data)
	return first
}

// settle forgets the changes once they are stored.
func (s *Session) settle() {
	s.changes, s.modified, s.userSet = nil, false, false
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

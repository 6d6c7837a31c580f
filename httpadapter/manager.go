package httpadapter

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// ErrSaveFailed is returned by Write, ReadFrom and Flush of the middleware's
// ResponseWriter when the session could not be saved before the response
// started: the error handler has answered the request instead, so the handler
// should stop writing.
var ErrSaveFailed = errors.New("httpadapter: the session could not be saved; the error handler answered the request")

// Manager gives requests their sessions and manages the session cookie. Build
// one with New and wrap handlers with Middleware. It is safe for concurrent
// use and immutable once built.
type Manager struct {
	store        core.Store
	opts         core.Options
	codec        *codec
	cookie       http.Cookie // the session cookie without value and Max-Age
	removal      string      // the whole removal cookie
	errorHandler ErrorHandler
	logger       *slog.Logger
}

// New returns a Manager keeping sessions in store. Without options it uses
// the defaults of tower-sessions: cookie "id", Path "/", no Domain, Secure,
// HttpOnly, SameSite=Strict, sessions that end with the browser session. It
// returns an error for an invalid cookie name, path or domain, a key shorter
// than KeyLen bytes, signed and private keys together, SameSite=None or
// Partitioned without Secure, or a "__Host-" or "__Secure-" name whose
// attributes break the prefix's rules.
func New(store core.Store, opts ...Option) (*Manager, error) {
	if store == nil {
		return nil, errors.New("httpadapter: New needs a store")
	}
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	cookie, removal, err := newCookie(&c)
	if err != nil {
		return nil, err
	}
	cd, err := newCodec(&c)
	if err != nil {
		return nil, err
	}
	if c.sessionEndLifetime < 0 {
		return nil, errors.New("httpadapter: the session-end lifetime must not be negative")
	}
	if c.maxLifetime < 0 {
		return nil, errors.New("httpadapter: WithMaxLifetime: the lifetime must not be negative (0 means no cap)")
	}
	m := &Manager{
		store: store,
		opts: core.Options{
			Expiry:             c.expiry,
			SessionEndLifetime: c.sessionEndLifetime,
			AlwaysSave:         c.alwaysSave,
			MaxLifetime:        c.maxLifetime,
			MaxRecordSize:      c.maxRecordSize,
			Now:                c.now,
			Logger:             c.logger,
		},
		codec:        cd,
		cookie:       cookie,
		removal:      removal,
		errorHandler: c.errorHandler,
		logger:       c.logger,
	}
	if m.errorHandler == nil {
		m.errorHandler = defaultErrorHandler
	}
	return m, nil
}

// defaultErrorHandler answers 409 Conflict when the request's changes were
// dropped because a concurrent request ended or cycled the session (the
// client may retry), and 500 otherwise, without detail.
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, core.ErrSuperseded) {
		code = http.StatusConflict
	}
	http.Error(w, http.StatusText(code), code)
}

func (m *Manager) now() time.Time {
	if m.opts.Now != nil {
		return m.opts.Now()
	}
	return time.Now()
}

func (m *Manager) log() *slog.Logger {
	if m.logger != nil {
		return m.logger
	}
	return slog.Default()
}

// Middleware wraps next so that every request it serves has a session,
// available with FromContext(r.Context()). See the package documentation for
// when the session is saved and which cookie is sent.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return &handler{m: m, next: next}
}

type handler struct {
	m    *Manager
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	rw := &responseWriter{w: w, m: m}
	var presented []string
	presented, rw.truncated = m.codec.presented(r, rw.tokens[:0])
	rw.sess = core.NewSessionFromTokens(m.store, presented, &m.opts)
	rw.ctx = context.WithValue(r.Context(), sessionKey{}, rw.sess)
	r = r.WithContext(rw.ctx)
	rw.r = r
	h.next.ServeHTTP(rw, r)
	rw.finish()
}

// FromContext returns the session of the request whose context is ctx, or
// nil when ctx does not come from a request served by Middleware. A nil
// session is safe to use: every method returns core.ErrNoSession, whose
// message names the missing middleware, so a handler mounted outside
// Middleware fails with a clear error instead of a nil dereference.
func FromContext(ctx context.Context) *core.Session {
	s, _ := ctx.Value(sessionKey{}).(*core.Session)
	return s
}

type sessionKey struct{}

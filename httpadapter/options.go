package httpadapter

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// Option configures a Manager; pass options to New. Options are applied in
// order, so a later option overrides an earlier one of the same kind.
type Option func(*config)

// ErrorHandler answers a request whose session could not be saved. w is the
// original http.ResponseWriter and no header has been written to it yet.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

type config struct {
	name               string
	path               string
	domain             string
	secure             bool
	httpOnly           bool
	sameSite           http.SameSite
	partitioned        bool
	expiry             core.Expiry
	sessionEndLifetime time.Duration
	alwaysSave         bool
	maxLifetime        time.Duration
	maxRecordSize      int
	signedKeys         [][]byte
	privateKeys        [][]byte
	errorHandler       ErrorHandler
	logger             *slog.Logger
	now                func() time.Time
}

func defaultConfig() config {
	return config{
		name:     DefaultCookieName,
		path:     "/",
		secure:   true,
		httpOnly: true,
		sameSite: http.SameSiteStrictMode,
	}
}

// DefaultCookieName is the name of the session cookie unless WithCookieName
// changes it; it is the name tower-sessions uses.
const DefaultCookieName = "id"

// WithCookieName sets the name of the session cookie. Default "id". Change it
// when another cookie of your site already uses that name, or when several
// managers share one host (each needs its own name). The name must be an
// RFC 6265 token; New rejects anything else.
//
// Use a name starting with "__Host-" (e.g. "__Host-id") whenever the site is
// served over HTTPS (Secure, the default): browsers accept such a cookie only
// with Secure, Path "/" and no Domain, and only from the host itself, so a
// sibling subdomain (another app under the same parent domain) cannot plant
// a cookie of that name to shadow or fix the session. New checks those
// attributes for "__Host-" and Secure for "__Secure-".
func WithCookieName(name string) Option { return func(c *config) { c.name = name } }

// WithPath sets the cookie's Path attribute. Default "/", so the session is
// sent with every request to the site. Narrow it when the sessions belong to
// one part of the site (e.g. "/admin"). The removal cookie uses the same path.
func WithPath(path string) Option { return func(c *config) { c.path = path } }

// WithDomain sets the cookie's Domain attribute. Default: none, so the cookie
// goes back only to the host that set it (the safest choice). Set it (e.g.
// "example.com") to share the session with subdomains. The removal cookie uses
// the same domain.
func WithDomain(domain string) Option { return func(c *config) { c.domain = domain } }

// WithSecure sets the cookie's Secure attribute. Default true: browsers send
// the cookie over HTTPS only. Turn it off only for local development over
// plain HTTP (browsers treat http://localhost as secure, so even that usually
// works with the default).
func WithSecure(secure bool) Option { return func(c *config) { c.secure = secure } }

// WithHTTPOnly sets the cookie's HttpOnly attribute. Default true: scripts in
// the page cannot read the cookie, which limits what a cross-site-scripting
// bug can steal. There is rarely a reason to turn it off.
func WithHTTPOnly(httpOnly bool) Option { return func(c *config) { c.httpOnly = httpOnly } }

// WithSameSite sets the cookie's SameSite attribute. Default
// http.SameSiteStrictMode: the cookie is never sent on cross-site requests,
// which blocks cross-site request forgery but also logs a user "out" when
// they follow a link to your site from elsewhere; choose
// http.SameSiteLaxMode to keep sessions on such top-level navigations.
// http.SameSiteNoneMode (needed for cross-site embedding) requires Secure;
// http.SameSiteDefaultMode omits the attribute.
func WithSameSite(mode http.SameSite) Option { return func(c *config) { c.sameSite = mode } }

// WithPartitioned sets the cookie's Partitioned attribute (CHIPS). Default
// false. Turn it on when your site runs embedded in other sites (an iframe,
// usually with SameSite=None): browsers that block third-party cookies still
// keep a partitioned one, separately for each top-level site. It requires
// Secure; New rejects it otherwise. The removal cookie carries it too, as a
// partitioned cookie can only be removed by one.
func WithPartitioned(partitioned bool) Option {
	return func(c *config) { c.partitioned = partitioned }
}

// WithExpiry sets the default expiry of sessions; a handler can change it per
// session with Session.SetExpiry. Default core.OnSessionEnd(): the cookie has
// no Max-Age and lasts until the browser closes. Use core.OnInactivity(d) to
// end sessions after d without a save (each save renews it; see
// WithAlwaysSave to renew on reads too) or core.AtDateTime(t) for a fixed end.
func WithExpiry(e core.Expiry) Option { return func(c *config) { c.expiry = e } }

// WithSessionEndLifetime sets how long the record of an OnSessionEnd session
// is kept in the store, since the server cannot know when the browser closes.
// Default core.DefaultSessionEndLifetime (two weeks). Shorten it to reclaim
// storage sooner or to bound how long a forgotten browser stays logged in.
func WithSessionEndLifetime(d time.Duration) Option {
	return func(c *config) { c.sessionEndLifetime = d }
}

// WithMaxLifetime caps every session at d after it was created, however
// active it is (OWASP's absolute timeout), on top of WithExpiry: with
// core.OnInactivity(30*time.Minute) and WithMaxLifetime(12*time.Hour) a
// session ends after 30 idle minutes or 12 hours after it began, whichever
// comes first, and its cookie's Max-Age never outlives the cap. CycleID keeps
// the creation time. Default 0: no cap. Set it for applications whose
// sessions grant privileges that should be re-proven now and then.
func WithMaxLifetime(d time.Duration) Option { return func(c *config) { c.maxLifetime = d } }

// WithMaxRecordSize bounds a session's data in bytes of keys plus encoded
// values: an Insert or Update that would exceed it returns a
// *core.RecordTooLargeError naming the limit and changes nothing. Default
// core.DefaultMaxRecordSize (1 MiB); negative means no limit. Raise it only
// if you keep large values in sessions, and mind your database's own limit
// (MariaDB's max_allowed_packet).
func WithMaxRecordSize(n int) Option { return func(c *config) { c.maxRecordSize = n } }

// WithAlwaysSave makes every request that carries a valid session save it
// (and resend its cookie), even when nothing changed. Default false. Turn it
// on with an OnInactivity expiry when reading a session should keep it alive;
// it costs a load and a write on every such request.
func WithAlwaysSave(always bool) Option { return func(c *config) { c.alwaysSave = always } }

// WithSignedKeys signs cookie values with HMAC-SHA256. Default: no signing
// (the cookie carries the bare 128-bit random token, which is already
// unguessable). Signing lets the server reject forged or tampered values
// without a store call. Each key is a secret of at least KeyLen (32) bytes of
// random data (e.g. 32 bytes from crypto/rand, kept base64-encoded in your
// configuration and decoded at start-up); New rejects shorter ones. The signing key is derived from it with
// HKDF-SHA256, so a longer secret is fine and the same secret given to
// WithPrivateKeys yields a different key. The first key signs; every key
// verifies, so rotate by putting a new key first and dropping the old one
// after the longest session lifetime. It cannot be combined with
// WithPrivateKeys.
//
// Cookies signed before keys were derived (versions that used the 32 bytes
// as the HMAC key directly) no longer verify: their clients start new
// sessions.
func WithSignedKeys(keys ...[]byte) Option {
	return func(c *config) { c.signedKeys = cloneKeys(keys) }
}

// WithPrivateKeys encrypts and authenticates cookie values with AES-256-GCM
// (random 96-bit nonce, the cookie name as additional data). Default: no
// encryption. Use it when the cookie value itself must stay opaque to the
// client. Each key is a secret of at least KeyLen (32) random bytes, from
// which the AES key is derived with HKDF-SHA256 (see WithSignedKeys; the same
// note on older cookies applies). The first key encrypts; every key decrypts,
// so rotate as with WithSignedKeys. It cannot be combined with
// WithSignedKeys.
func WithPrivateKeys(keys ...[]byte) Option {
	return func(c *config) { c.privateKeys = cloneKeys(keys) }
}

// WithErrorHandler sets what answers a request whose session could not be
// saved (a store failure) before its response started. Default: a plain
// "500 Internal Server Error" via http.Error, with no detail of the error, or
// "409 Conflict" when errors.Is(err, core.ErrSuperseded): a concurrent request
// ended or cycled the session and this request's changes were dropped.
// Change it to render your own error page. The error is logged either way.
func WithErrorHandler(h ErrorHandler) Option { return func(c *config) { c.errorHandler = h } }

// WithLogger sets the logger for store failures and for changes made too late
// to update the cookie. Default: slog.Default() at the time of logging. Tokens
// are never logged; the session ID (a hash of the token) is.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the clock used for expiry deadlines, store load filters and
// cookie Max-Age. Default time.Now. Only tests have a reason to change it.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = append([]byte(nil), k...)
	}
	return out
}

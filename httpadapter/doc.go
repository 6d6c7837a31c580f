// Package httpadapter connects sqlsessions to net/http: a Manager built from
// a core.Store and options, whose Middleware gives every request a lazy
// *core.Session (see FromContext) and takes care of the session cookie.
//
// The cookie follows these rules:
//
//   - A request that does not modify its session causes no store write and
//     no Set-Cookie. Touching nothing costs no store call at all; reading
//     costs one.
//   - A modified session is saved before the first byte of the response body
//     is written (the middleware wraps the http.ResponseWriter and commits on
//     WriteHeader, Write, ReadFrom or Flush), then the cookie is set with a
//     Max-Age taken from the session's expiry (OnInactivity: its length;
//     AtDateTime: the seconds left, never negative; OnSessionEnd: no Max-Age,
//     a browser-session cookie). Such a response also gets "Vary: Cookie" and
//     "Cache-Control: private", so no shared cache stores a response that
//     carries a session cookie.
//   - A request that presented a session that is now gone (flushed, emptied,
//     unknown, expired or malformed) gets a removal cookie with the same Path,
//     Domain, Secure, HttpOnly and SameSite and Max-Age=0.
//   - A session changed after the response headers were written is still
//     saved if the client's cookie does not need to change; if it would need a
//     new or removed cookie, the change is reported with log/slog (and a
//     brand-new session that no client could ever name is not created).
//   - A response whose status is 500 or more does not save the session (a
//     Flush or CycleID has already deleted the old record, as it does at once).
//   - A store failure while saving answers 500 through the error handler (if
//     no header has been written yet), is logged, and never panics.
//
// A request may carry several cookies of the session's name: a sibling
// subdomain can set cookies for the parent domain, and browsers send them
// all. Every value is considered, in header order: values that fail
// verification are dropped, and the session uses the first token that names
// a live session, looking up at most core.MaxPresentedTokens distinct tokens.
// A removal cookie is sent only when every value was examined and none names
// a session, so a valid cookie is never removed. A cookie name with the
// "__Host-" prefix (see WithCookieName) stops other hosts from planting such
// cookies at all; use it, with Secure, wherever the site is served over
// HTTPS. (net/http ignores a Cookie header of more than 3000 cookies, so
// such a request has no session.)
//
// Cookie values can be plain (the session token), signed (HMAC-SHA256) or
// private (AES-256-GCM); see WithSignedKeys and WithPrivateKeys, whose keys
// are derived with HKDF-SHA256 from secrets of at least KeyLen bytes. A
// signed or private cookie that fails verification counts as no cookie at
// all: it gets no removal cookie, since nothing proves it is ours. A plain
// value that is not a well-formed token counts as a session that is gone, so
// unless another cookie names a live session the client receives a removal
// cookie.
//
// Tokens never appear in logs or errors: the middleware logs the session's ID,
// a SHA-256-derived value that cannot be turned back into a token.
package httpadapter

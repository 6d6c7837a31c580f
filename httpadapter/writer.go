package httpadapter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/sqlsessions/sqlsessions/core"
)

// responseWriter saves the session just before the response headers go out.
// It is used by one request's handler goroutine, like any ResponseWriter.
type responseWriter struct {
	w    http.ResponseWriter
	m    *Manager
	r    *http.Request
	sess *core.Session
	ctx  context.Context // the request's context, carrying sess

	// The values of the session cookie the request presented (tokens has
	// room for the usual one), and whether some were left out.
	tokens    [1]string
	truncated bool

	started   bool // the response status is decided: headers are out (or hijacked)
	skip      bool // a 5xx response: the session is not saved
	failed    bool // a save failed before the headers; the error handler answered
	committed bool // a commit happened when the headers went out

	// What the client holds after the headers: the token of its cookie, and
	// the expiry that cookie was sent with (if one was sent).
	clientToken  core.Token
	cookieSent   bool
	cookieExpiry core.Expiry
}

// Header implements http.ResponseWriter.
func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// WriteHeader implements http.ResponseWriter: a final status first saves the
// session (unless it is 5xx) and sets the cookie.
func (rw *responseWriter) WriteHeader(code int) {
	if rw.failed {
		return
	}
	if !rw.started {
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			rw.w.WriteHeader(code) // informational: the final status is still to come
			return
		}
		if !rw.start(code) {
			return
		}
	}
	rw.w.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.started && !rw.start(http.StatusOK) || rw.failed {
		return 0, ErrSaveFailed
	}
	return rw.w.Write(p)
}

// WriteString implements io.StringWriter, so io.WriteString reaches the
// underlying writer without a copy.
func (rw *responseWriter) WriteString(s string) (int, error) {
	if !rw.started && !rw.start(http.StatusOK) || rw.failed {
		return 0, ErrSaveFailed
	}
	return io.WriteString(rw.w, s)
}

// ReadFrom implements io.ReaderFrom, keeping the underlying writer's
// sendfile path (net/http's own ResponseWriter has one).
func (rw *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !rw.started && !rw.start(http.StatusOK) || rw.failed {
		return 0, ErrSaveFailed
	}
	if rf, ok := rw.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{rw.w}, src)
}

type writerOnly struct{ io.Writer }

// Flush implements http.Flusher. Flushing starts the response, so the session
// is saved first.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is what http.ResponseController.Flush calls: like Flush, but it
// reports whether the underlying writer could flush.
func (rw *responseWriter) FlushError() error {
	if !rw.started && !rw.start(http.StatusOK) || rw.failed {
		return ErrSaveFailed
	}
	return http.NewResponseController(rw.w).Flush()
}

// Hijack implements http.Hijacker. The session is saved first; a cookie it
// would need cannot be sent any more, which is logged.
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.failed {
		return nil, nil, ErrSaveFailed
	}
	if !rw.started {
		if err := rw.commitHijack(); err != nil {
			return nil, nil, err
		}
	}
	return http.NewResponseController(rw.w).Hijack()
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

// start is called once, when the final status code is decided and the
// headers are about to be written. It saves the session and sets the cookie;
// it reports false if saving failed and the error handler answered instead.
func (rw *responseWriter) start(code int) bool {
	rw.started = true
	if code >= 500 {
		rw.skip = true
		return true
	}
	res, err := rw.commit()
	if err != nil {
		rw.failed = true
		rw.logFailure(err, "sqlsessions: saving the session failed; answering with the error handler")
		rw.m.errorHandler(rw.w, rw.r, err)
		return false
	}
	rw.committed = true
	rw.setCookie(res)
	return true
}

// commit commits the session.
func (rw *responseWriter) commit() (core.CommitResult, error) {
	return rw.sess.Commit(rw.ctx)
}

// commitHijack saves the session of a request whose connection is taken over:
// no header will be sent, so a needed cookie is only reported.
func (rw *responseWriter) commitHijack() error {
	res, err := rw.commit()
	if err != nil {
		rw.logFailure(err, "sqlsessions: saving the session before a hijack failed")
		return fmt.Errorf("httpadapter: saving the session before hijacking: %w", err)
	}
	rw.started, rw.committed = true, true
	if res == core.Saved || res == core.Removed && !rw.truncated {
		rw.warnCookie(res, "the connection was hijacked before the cookie could be sent")
	}
	rw.clientToken = rw.sess.Token()
	return nil
}

// setCookie writes the cookie that the commit result calls for.
func (rw *responseWriter) setCookie(res core.CommitResult) {
	rw.clientToken = rw.sess.Token()
	switch res {
	case core.Saved:
		expiry := rw.sess.Expiry()
		// http.Cookie: 0 means no Max-Age, negative means Max-Age=0.
		maxAge := 0
		if s, ok := rw.sess.MaxAge(rw.m.now()); ok {
			maxAge = s
			if s == 0 {
				maxAge = -1
			}
		}
		c := rw.m.cookie
		c.Value = rw.m.codec.encode(rw.clientToken.String())
		c.MaxAge = maxAge
		rw.addHeaders(c.String())
		rw.cookieSent, rw.cookieExpiry = true, expiry
	case core.Removed:
		// Some presented values were left unexamined: one may be a valid
		// cookie, which a removal cookie would delete.
		if !rw.truncated {
			rw.addHeaders(rw.m.removal)
		}
	}
}

// logFailure logs a failed save at a level that says whose problem it is: a
// change dropped because a concurrent request ended the session, or a client
// that went away, is part of normal traffic (Info); anything else is an
// error of the server or its database.
func (rw *responseWriter) logFailure(err error, msg string) {
	level := slog.LevelError
	if errors.Is(err, core.ErrSuperseded) || errors.Is(err, context.Canceled) && rw.r.Context().Err() != nil {
		level = slog.LevelInfo
	}
	rw.log().Log(rw.ctx, level, msg, "id", rw.sess.ID(), "error", err)
}

// addHeaders adds the Set-Cookie header and the headers that keep shared
// caches from storing a response that carries it.
func (rw *responseWriter) addHeaders(cookie string) {
	h := rw.w.Header()
	if len(h["Set-Cookie"]) == 0 && len(h["Vary"]) == 0 && len(h["Cache-Control"]) == 0 {
		// The usual case: one backing array for the three values, each
		// slice capped so that appending to one never writes into another.
		vals := make([]string, 3)
		vals[0], vals[1], vals[2] = cookie, "Cookie", "private"
		h["Set-Cookie"], h["Vary"], h["Cache-Control"] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
		return
	}
	h["Set-Cookie"] = append(h["Set-Cookie"], cookie)
	if !hasToken(h["Vary"], "Cookie") && !hasToken(h["Vary"], "*") {
		h["Vary"] = append(h["Vary"], "Cookie")
	}
	makePrivate(h)
}

func (rw *responseWriter) log() *slog.Logger { return rw.m.log() }

// finish runs after the handler returned.
func (rw *responseWriter) finish() {
	switch {
	case rw.failed || rw.skip:
		return
	case !rw.started:
		// Nothing written: commit now; net/http sends the implicit 200 (or
		// the error handler's answer).
		rw.start(http.StatusOK)
		return
	}
	rw.late()
}

// late saves changes made after the headers went out, when the client's
// cookie can stay as it is; otherwise it reports what could not be done.
func (rw *responseWriter) late() {
	if rw.committed && !rw.sess.Modified() {
		return
	}
	tok := rw.sess.Token()
	if tok.IsZero() && rw.sess.Modified() {
		// A new session (or a cycled one) needs a cookie the client can no
		// longer receive: creating it would leave an orphan record.
		rw.log().WarnContext(rw.ctx, "sqlsessions: session changed after the response headers were written and would need a new cookie; the change is dropped",
			"path", rw.r.URL.Path)
		return
	}
	res, err := rw.commit()
	if err != nil {
		rw.log().ErrorContext(rw.ctx, "sqlsessions: saving a session changed after the response headers were written failed",
			"id", tok.ID(), "error", err)
		return
	}
	switch res {
	case core.Removed:
		if rw.truncated {
			return
		}
		rw.warnCookie(res, "the session was removed after the response headers were written; the client's cookie could not be removed")
	case core.Saved:
		if !tok.Equal(rw.clientToken) {
			rw.warnCookie(res, "the session was saved after the response headers were written under a token the client does not have")
			return
		}
		e := rw.sess.Expiry()
		var stale bool
		if rw.cookieSent {
			stale = e != rw.cookieExpiry
		} else {
			_, inactivity := e.Inactivity()
			stale = inactivity || e != rw.m.opts.Expiry
		}
		if stale {
			rw.warnCookie(res, "the session was saved after the response headers were written; its cookie's Max-Age could not be updated")
		}
	}
}

func (rw *responseWriter) warnCookie(res core.CommitResult, msg string) {
	rw.log().WarnContext(rw.ctx, "sqlsessions: "+msg, "id", rw.sess.ID(), "result", res.String(), "path", rw.r.URL.Path)
}

// hasToken reports whether a comma-separated header holds tok
// (case-insensitively).
func hasToken(values []string, tok string) bool {
	for _, v := range values {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(part), tok) {
				return true
			}
		}
	}
	return false
}

// makePrivate makes sure no shared cache stores the response: it adds the
// "private" directive unless "private" or "no-store" is there already, and
// drops "public" and "s-maxage", which would contradict it.
func makePrivate(h http.Header) {
	cc := h["Cache-Control"]
	if len(cc) == 0 {
		h["Cache-Control"] = []string{"private"}
		return
	}
	var kept []string
	for _, v := range cc {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "private", "no-store":
				if !strings.Contains(part, "=") {
					return
				}
			case "public", "s-maxage", "":
				continue
			}
			kept = append(kept, part)
		}
	}
	h["Cache-Control"] = []string{strings.Join(append(kept, "private"), ", ")}
}

package httpadapter

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/sqlsessions/sqlsessions/core"
)

// KeyLen is the length every signing or encryption key must have: 32 bytes
// (HMAC-SHA256 and AES-256).
const KeyLen = 32

// maxCandidates bounds how many cookies with the session's name one request
// may make the middleware examine (a MAC or a decryption each in signed or
// private mode): a header stuffed with thousands of them costs one pass over
// its bytes, not thousands of cryptographic operations.
const maxCandidates = 8

type cookieMode uint8

const (
	modePlain cookieMode = iota
	modeSigned
	modePrivate
)

var (
	b64       = base64.RawURLEncoding
	b64Strict = base64.RawURLEncoding.Strict()
)

const (
	macLen        = sha256.Size
	macB64Len     = 43                            // base64url length of a MAC
	signedLen     = core.TokenLen + 1 + macB64Len // token "." mac
	sealedLen     = 12 + core.TokenLen + 16       // nonce, encrypted token, tag
	privateB64Len = (sealedLen*8 + 5) / 6         // base64url length of the sealed token
)

// codec turns tokens into cookie values and back.
type codec struct {
	mode   cookieMode
	name   string
	prefix []byte // name + "=": the MAC input before the token
	macs   []*sync.Pool
	aeads  []cipher.AEAD
}

type macState struct {
	h   hash.Hash
	buf [signedLen + 64]byte
}

func newCodec(c *config) (*codec, error) {
	cd := &codec{name: c.name, prefix: []byte(c.name + "=")}
	switch {
	case len(c.signedKeys) > 0 && len(c.privateKeys) > 0:
		return nil, errors.New("httpadapter: WithSignedKeys and WithPrivateKeys cannot be combined (private cookies are already authenticated)")
	case len(c.signedKeys) > 0:
		cd.mode = modeSigned
		for i, k := range c.signedKeys {
			if len(k) != KeyLen {
				return nil, fmt.Errorf("httpadapter: signing key %d is %d bytes; it must be exactly %d random bytes", i, len(k), KeyLen)
			}
			cd.macs = append(cd.macs, &sync.Pool{New: func() any {
				return &macState{h: hmac.New(sha256.New, k)}
			}})
		}
	case len(c.privateKeys) > 0:
		cd.mode = modePrivate
		for i, k := range c.privateKeys {
			if len(k) != KeyLen {
				return nil, fmt.Errorf("httpadapter: encryption key %d is %d bytes; it must be exactly %d random bytes", i, len(k), KeyLen)
			}
			block, err := aes.NewCipher(k)
			if err != nil {
				return nil, fmt.Errorf("httpadapter: encryption key %d: %w", i, err)
			}
			aead, err := cipher.NewGCMWithRandomNonce(block)
			if err != nil {
				return nil, fmt.Errorf("httpadapter: encryption key %d: %w", i, err)
			}
			cd.aeads = append(cd.aeads, aead)
		}
	}
	return cd, nil
}

// withMAC computes the MAC of token under key i and passes it to f; the MAC
// lives in pooled memory, so f must not keep it.
func (cd *codec) withMAC(i int, token string, f func(mac []byte) bool) bool {
	ms := cd.macs[i].Get().(*macState)
	defer cd.macs[i].Put(ms)
	ms.h.Reset()
	b := append(append(ms.buf[:0], cd.prefix...), token...)
	ms.h.Write(b)
	return f(ms.h.Sum(ms.buf[:0]))
}

// scratch is pooled memory for sealing and opening private values (buffers
// handed to a cipher.AEAD escape to the heap).
type scratch struct {
	sealed [sealedLen + 2]byte
	plain  [sealedLen]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// appendValue appends the cookie value for token to dst.
func (cd *codec) appendValue(dst []byte, token string) []byte {
	switch cd.mode {
	case modeSigned:
		dst = append(dst, token...)
		dst = append(dst, '.')
		cd.withMAC(0, token, func(mac []byte) bool {
			dst = b64.AppendEncode(dst, mac)
			return true
		})
		return dst
	case modePrivate:
		sc := scratchPool.Get().(*scratch)
		defer scratchPool.Put(sc)
		plain := append(sc.plain[:0], token...)
		sealed := cd.aeads[0].Seal(sc.sealed[:0], nil, plain, cd.prefix[:len(cd.name)])
		return b64.AppendEncode(dst, sealed)
	default:
		return append(dst, token...)
	}
}

// decode returns the token string a cookie value carries, and whether the
// value verified. In plain mode any value "verifies": the session judges its
// form.
func (cd *codec) decode(value string) (string, bool) {
	switch cd.mode {
	case modeSigned:
		if len(value) != signedLen || value[core.TokenLen] != '.' {
			return "", false
		}
		token := value[:core.TokenLen]
		var got [macLen + 2]byte
		n, err := b64Strict.Decode(got[:], []byte(value[core.TokenLen+1:]))
		if err != nil || n != macLen {
			return "", false
		}
		for i := range cd.macs {
			if cd.withMAC(i, token, func(want []byte) bool { return hmac.Equal(want, got[:macLen]) }) {
				return token, true
			}
		}
		return "", false
	case modePrivate:
		if len(value) != privateB64Len {
			return "", false
		}
		sc := scratchPool.Get().(*scratch)
		defer scratchPool.Put(sc)
		n, err := b64Strict.Decode(sc.sealed[:], []byte(value))
		if err != nil || n != sealedLen {
			return "", false
		}
		ad := cd.prefix[:len(cd.name)]
		for _, aead := range cd.aeads {
			if out, err := aead.Open(sc.plain[:0], nil, sc.sealed[:n], ad); err == nil {
				return string(out), true
			}
		}
		return "", false
	default:
		return value, true
	}
}

// presented finds the session cookie in r and returns the value to hand to
// core.NewSession: the token of the first cookie with the session's name
// that verifies and parses; else, in plain mode, the first such cookie's
// value (a malformed token, which the session reports gone so the client
// gets a removal cookie); else "". It makes one pass over the Cookie headers
// and allocates only to unescape a percent-encoded value.
func (cd *codec) presented(h http.Header) string {
	var fallback string
	seen := 0
	for _, line := range h["Cookie"] {
		for len(line) > 0 && seen < maxCandidates {
			var part string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			part = trimSpace(part)
			name, value, ok := strings.Cut(part, "=")
			if !ok || name != cd.name {
				continue
			}
			seen++
			value = unquote(value)
			if strings.IndexByte(value, '%') >= 0 {
				v, err := url.PathUnescape(value)
				if err != nil {
					continue
				}
				value = v
			}
			if value == "" {
				continue
			}
			token, ok := cd.decode(value)
			if !ok {
				continue
			}
			if _, err := core.ParseToken(token); err == nil {
				return token
			}
			if fallback == "" {
				fallback = token
			}
		}
	}
	return fallback
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// cookieFormat holds the precomputed parts of the Set-Cookie header.
type cookieFormat struct {
	prefix  string // name "="
	attrs   string // "; Path=..; Domain=.." before Max-Age
	flags   string // "; HttpOnly; Secure; SameSite=.." after Max-Age
	removal string // the whole removal cookie
}

func newCookieFormat(c *config) (cookieFormat, error) {
	if !validName(c.name) {
		return cookieFormat{}, fmt.Errorf("httpadapter: cookie name %q is not an RFC 6265 token", c.name)
	}
	if !validAttr(c.path) {
		return cookieFormat{}, fmt.Errorf("httpadapter: cookie path %q contains a control character or ';'", c.path)
	}
	if !validAttr(c.domain) || strings.ContainsAny(c.domain, " \"") {
		return cookieFormat{}, fmt.Errorf("httpadapter: cookie domain %q is not a valid domain", c.domain)
	}
	var attrs, flags strings.Builder
	if c.path != "" {
		attrs.WriteString("; Path=")
		attrs.WriteString(c.path)
	}
	if c.domain != "" {
		attrs.WriteString("; Domain=")
		attrs.WriteString(c.domain)
	}
	if c.httpOnly {
		flags.WriteString("; HttpOnly")
	}
	if c.secure {
		flags.WriteString("; Secure")
	}
	switch c.sameSite {
	case http.SameSiteStrictMode:
		flags.WriteString("; SameSite=Strict")
	case http.SameSiteLaxMode:
		flags.WriteString("; SameSite=Lax")
	case http.SameSiteNoneMode:
		if !c.secure {
			return cookieFormat{}, errors.New("httpadapter: SameSite=None requires Secure (browsers reject such cookies)")
		}
		flags.WriteString("; SameSite=None")
	case http.SameSiteDefaultMode, 0:
	default:
		return cookieFormat{}, fmt.Errorf("httpadapter: unknown SameSite mode %d", c.sameSite)
	}
	f := cookieFormat{prefix: c.name + "=", attrs: attrs.String(), flags: flags.String()}
	f.removal = f.prefix + f.attrs + "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" + f.flags
	return f, nil
}

// appendSetCookie appends a Set-Cookie value carrying value to dst; maxAge < 0
// means no Max-Age (a browser-session cookie).
func (f *cookieFormat) appendSetCookie(dst []byte, value []byte, maxAge int) []byte {
	dst = append(dst, f.prefix...)
	dst = append(dst, value...)
	dst = append(dst, f.attrs...)
	if maxAge >= 0 {
		dst = append(dst, "; Max-Age="...)
		dst = strconv.AppendInt(dst, int64(maxAge), 10)
	}
	return append(dst, f.flags...)
}

// validName reports whether s is an RFC 7230 token (RFC 6265 cookie-name).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// validAttr reports whether s may appear as an attribute value.
func validAttr(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == ';' {
			return false
		}
	}
	return true
}

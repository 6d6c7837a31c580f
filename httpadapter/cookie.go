package httpadapter

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// KeyLen is the minimum length of a key (a secret) passed to WithSignedKeys
// or WithPrivateKeys: 32 bytes, the strength of the HMAC-SHA256 and AES-256
// keys derived from it.
const KeyLen = 32

// maxPresented bounds how many values of the session cookie one request hands
// to the session. Values that fail verification (signed or private mode) do
// not count, and in plain mode only the first malformed value does, so
// neither forged nor junk cookies can push a valid one out of reach.
const maxPresented = 64

// The HKDF info strings: each purpose derives its own key from a secret, so
// one secret used for both modes never yields the same key twice.
const (
	signingInfo    = "sqlsessions/httpadapter cookie signing key (HMAC-SHA256)"
	encryptionInfo = "sqlsessions/httpadapter cookie encryption key (AES-256-GCM)"
)

type cookieMode uint8

const (
	modePlain cookieMode = iota
	modeSigned
	modePrivate
)

var b64 = base64.RawURLEncoding.Strict()

// codec turns tokens into cookie values and back.
type codec struct {
	mode   cookieMode
	name   string
	prefix []byte       // name "=": what the MAC covers before the token
	macs   []*sync.Pool // per key: HMAC states, reused (hmac.New rehashes the key pads and allocates)
	aeads  []cipher.AEAD
}

func newCodec(c *config) (*codec, error) {
	cd := &codec{name: c.name, prefix: []byte(c.name + "=")}
	switch {
	case len(c.signedKeys) > 0 && len(c.privateKeys) > 0:
		return nil, errors.New("httpadapter: WithSignedKeys and WithPrivateKeys cannot be combined (private cookies are already authenticated)")
	case len(c.signedKeys) > 0:
		cd.mode = modeSigned
		for i, secret := range c.signedKeys {
			k, err := deriveKey(secret, signingInfo, "signing", i)
			if err != nil {
				return nil, err
			}
			cd.macs = append(cd.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }})
		}
	case len(c.privateKeys) > 0:
		cd.mode = modePrivate
		for i, secret := range c.privateKeys {
			k, err := deriveKey(secret, encryptionInfo, "encryption", i)
			if err != nil {
				return nil, err
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

// deriveKey derives the 32-byte key for one purpose from a secret of at
// least KeyLen bytes.
func deriveKey(secret []byte, info, purpose string, i int) ([]byte, error) {
	if len(secret) < KeyLen {
		return nil, fmt.Errorf("httpadapter: %s key %d is %d bytes; it must be at least %d bytes of random data (e.g. from crypto/rand)", purpose, i, len(secret), KeyLen)
	}
	return hkdf.Key(sha256.New, secret, nil, info, 32)
}

// mac returns the MAC of the cookie name and token under key i.
func (cd *codec) mac(i int, token string) []byte {
	h := cd.macs[i].Get().(hash.Hash)
	defer cd.macs[i].Put(h)
	h.Reset()
	h.Write(cd.prefix)
	io.WriteString(h, token)
	return h.Sum(nil)
}

// encode returns the cookie value carrying token.
func (cd *codec) encode(token string) string {
	switch cd.mode {
	case modeSigned:
		return token + "." + b64.EncodeToString(cd.mac(0, token))
	case modePrivate:
		return b64.EncodeToString(cd.aeads[0].Seal(nil, nil, []byte(token), []byte(cd.name)))
	default:
		return token
	}
}

// decode returns the token a cookie value carries, and whether the value
// verified. In plain mode any value "verifies": the session judges its form.
func (cd *codec) decode(value string) (string, bool) {
	switch cd.mode {
	case modeSigned:
		token, sig, ok := strings.Cut(value, ".")
		if !ok || len(token) != core.TokenLen {
			return "", false
		}
		got, err := b64.DecodeString(sig)
		if err != nil {
			return "", false
		}
		for i := range cd.macs {
			if hmac.Equal(cd.mac(i, token), got) {
				return token, true
			}
		}
		return "", false
	case modePrivate:
		sealed, err := b64.DecodeString(value)
		if err != nil {
			return "", false
		}
		for _, aead := range cd.aeads {
			if out, err := aead.Open(nil, nil, sealed, []byte(cd.name)); err == nil {
				return string(out), true
			}
		}
		return "", false
	default:
		return value, true
	}
}

// presented appends to dst the values of the session cookie in r, in header
// order, that the session should consider: verified (decrypted) tokens, and
// in plain mode also the first value that is not a well-formed token, so that
// the session knows the client presented one. It stops after maxPresented
// values and then reports truncated: a valid cookie may be among those left
// out, so the client's cookie must not be removed.
//
// Percent-encoded values are unescaped (some clients encode them); empty
// values are skipped. net/http ignores a Cookie header of more than 3000
// cookies altogether (GODEBUG httpcookiemaxnum), so such a request has no
// session.
func (cd *codec) presented(r *http.Request, dst []string) (_ []string, truncated bool) {
	malformed := false
	for _, c := range r.CookiesNamed(cd.name) {
		v := c.Value
		if strings.IndexByte(v, '%') >= 0 {
			if u, err := url.PathUnescape(v); err == nil {
				v = u
			}
		}
		if v == "" {
			continue
		}
		tok, ok := cd.decode(v)
		if !ok {
			continue
		}
		if _, err := core.ParseToken(tok); err != nil {
			if malformed {
				continue
			}
			malformed = true
		}
		if len(dst) == maxPresented {
			return dst, true
		}
		dst = append(dst, tok)
	}
	return dst, false
}

// newCookie returns the session cookie with every attribute but its value
// and Max-Age, and the removal cookie, after checking the configuration.
func newCookie(c *config) (http.Cookie, string, error) {
	ck := http.Cookie{
		Name:        c.name,
		Path:        c.path,
		Domain:      c.domain,
		Secure:      c.secure,
		HttpOnly:    c.httpOnly,
		SameSite:    c.sameSite,
		Partitioned: c.partitioned,
	}
	if c.partitioned && !c.secure {
		return http.Cookie{}, "", errors.New("httpadapter: WithPartitioned requires Secure (browsers reject such cookies)")
	}
	if err := ck.Valid(); err != nil {
		return http.Cookie{}, "", fmt.Errorf("httpadapter: session cookie (name %q, path %q, domain %q): %w", c.name, c.path, c.domain, err)
	}
	switch c.sameSite {
	case 0, http.SameSiteDefaultMode, http.SameSiteLaxMode, http.SameSiteStrictMode:
	case http.SameSiteNoneMode:
		if !c.secure {
			return http.Cookie{}, "", errors.New("httpadapter: SameSite=None requires Secure (browsers reject such cookies)")
		}
	default:
		return http.Cookie{}, "", fmt.Errorf("httpadapter: unknown SameSite mode %d", c.sameSite)
	}
	// Browsers reject a prefixed cookie that breaks its prefix's rules, and
	// the session would silently never stick.
	if hasPrefixFold(c.name, "__Secure-") && !c.secure {
		return http.Cookie{}, "", fmt.Errorf("httpadapter: cookie name %q requires Secure", c.name)
	}
	if hasPrefixFold(c.name, "__Host-") && (!c.secure || c.path != "/" || c.domain != "") {
		return http.Cookie{}, "", fmt.Errorf("httpadapter: cookie name %q requires Secure, Path \"/\" and no Domain", c.name)
	}
	removal := ck
	removal.MaxAge = -1
	removal.Expires = time.Unix(0, 0)
	return ck, removal.String(), nil
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case, as browsers match
// cookie name prefixes.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

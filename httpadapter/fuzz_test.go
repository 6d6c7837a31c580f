package httpadapter

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
)

func fuzzCodec(t testing.TB, opts ...Option) *codec {
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	cd, err := newCodec(&c)
	if err != nil {
		t.Fatal(err)
	}
	return cd
}

// presentedIn returns what cd finds in a Cookie header.
func presentedIn(cd *codec, header string) []string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", header)
	got, _ := cd.presented(r, nil)
	return got
}

// fuzzToken is a fixed token: fuzzing workers run the setup in their own
// processes and must agree on it.
func fuzzToken(t testing.TB) string {
	tok, err := core.NewToken(strings.NewReader("fixed token 0123"))
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// idCookie matches a cookie named "id" (net/http trims blanks around names).
var idCookie = regexp.MustCompile(`(^|;)\s*id\s*=`)

// FuzzCookieHeader feeds arbitrary Cookie headers to the parser and to the
// whole middleware: no panic, and whatever is picked is a value of a cookie
// named "id" (unescaped).
func FuzzCookieHeader(f *testing.F) {
	tok := fuzzToken(f)
	for _, seed := range []string{
		"", "id=" + tok, "id=malformed", "id=; id=" + tok, "a=b; id=%41" + tok[1:], `id="` + tok + `"`,
		"id=%zz", "id", "=;;=; ;id=x=y", "id=" + tok + ";id=" + tok, strings.Repeat("id=x;", 100),
		"id =000", "id\t= x", "\rid=0",
	} {
		f.Add(seed)
	}
	cd := fuzzCodec(f)
	m, err := New(core.NewMemoryStore())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := FromContext(r.Context()).Keys(r.Context()); err != nil {
				t.Errorf("Keys: %v", err)
			}
		}))
		if got := presentedIn(cd, header); len(got) > 0 && !idCookie.MatchString(header) {
			t.Fatalf("picked %q from a header without an id cookie", got)
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header["Cookie"] = []string{header}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		for _, sc := range rec.Result().Header.Values("Set-Cookie") {
			if !strings.HasPrefix(sc, "id=;") {
				t.Fatalf("an unknown cookie led to %q, want only a removal cookie", sc)
			}
		}
	})
}

// FuzzSignedVerify: a value verifies only if it is exactly what the codec
// produces for its token; in particular no forged value ever verifies.
func FuzzSignedVerify(f *testing.F) {
	cd := fuzzCodec(f, WithSignedKeys(bytes.Repeat([]byte{1}, KeyLen), bytes.Repeat([]byte{2}, KeyLen)))
	other := fuzzCodec(f, WithSignedKeys(bytes.Repeat([]byte{3}, KeyLen)))
	tok := fuzzToken(f)
	good := cd.encode(tok)
	f.Add(good)
	f.Add(other.encode(tok))
	f.Add(tok)
	f.Add(tok + ".")
	f.Add(good[:len(good)-1] + "B")
	f.Add(strings.Replace(good, ".", "=", 1))
	f.Fuzz(func(t *testing.T, value string) {
		token, ok := cd.decode(value)
		if !ok {
			return
		}
		if again := cd.encode(token); again != value {
			t.Fatalf("%q verified but the codec would sign its token as %q", value, again)
		}
		if value != good {
			t.Fatalf("forged value %q verified", value)
		}
	})
}

// FuzzPrivateDecrypt: only values the codec encrypted ever decrypt. (The
// nonce is random, so workers encrypt the token differently; what they share
// is that the only plaintext ever encrypted under the key is tok.)
func FuzzPrivateDecrypt(f *testing.F) {
	cd := fuzzCodec(f, WithPrivateKeys(bytes.Repeat([]byte{4}, KeyLen)))
	other := fuzzCodec(f, WithPrivateKeys(bytes.Repeat([]byte{5}, KeyLen)))
	tok := fuzzToken(f)
	good := cd.encode(tok)
	f.Add(good)
	f.Add(other.encode(tok))
	f.Add(tok)
	f.Add(good[:len(good)-1])
	f.Add(strings.ToUpper(good))
	f.Fuzz(func(t *testing.T, value string) {
		token, ok := cd.decode(value)
		if !ok {
			return
		}
		if token != tok {
			t.Fatalf("%q decrypted to %q but was never produced by the codec", value, token)
		}
	})
}

// FuzzRoundTrip: every mode decodes what it encodes, for any token, and a
// codec for another cookie name rejects it (the name is authenticated).
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("0123456789abcdef"))
	k := bytes.Repeat([]byte{9}, KeyLen)
	plain, signed, private := fuzzCodec(f), fuzzCodec(f, WithSignedKeys(k)), fuzzCodec(f, WithPrivateKeys(k))
	signedOther := fuzzCodec(f, WithSignedKeys(k), WithCookieName("sid"))
	privateOther := fuzzCodec(f, WithPrivateKeys(k), WithCookieName("sid"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < 16 {
			return
		}
		tok, err := core.NewToken(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		s := tok.String()
		for name, cd := range map[string]*codec{"plain": plain, "signed": signed, "private": private} {
			v := cd.encode(s)
			if got := presentedIn(cd, "x=1; id="+v); len(got) != 1 || got[0] != s {
				t.Fatalf("%s: %q round-tripped to %q", name, s, got)
			}
		}
		if _, ok := signedOther.decode(signed.encode(s)); ok {
			t.Fatal("a signed value verified under another cookie name")
		}
		if _, ok := privateOther.decode(private.encode(s)); ok {
			t.Fatal("a private value decrypted under another cookie name")
		}
	})
}

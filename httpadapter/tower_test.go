package httpadapter_test

// The HTTP test suite of tower-sessions, ported case by case.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

var hour = httpadapter.WithExpiry(core.OnInactivity(time.Hour))

func TestNoSessionSet(t *testing.T) {
	rec := do(t, app(t, core.NewMemoryStore(), hour), "/", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "Hello, world!" {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	noCookie(t, rec)
}

func TestBogusSessionCookie(t *testing.T) {
	const bogus = "AAAAAAAAAAAAAAAAAAAAAA" // a well-formed token that names no session
	rec := do(t, app(t, core.NewMemoryStore(), hour), "/insert", "id="+bogus)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	c, _ := sessionCookie(t, rec)
	if c.Value == bogus || c.Value == "" {
		t.Fatalf("cookie value %q: want a fresh token, never the client's", c.Value)
	}
}

func TestMalformedSessionCookie(t *testing.T) {
	rec := do(t, app(t, core.NewMemoryStore(), hour), "/", "id=malformed")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	c, raw := sessionCookie(t, rec)
	if c.Value == "malformed" {
		t.Fatal("the malformed value was sent back")
	}
	if n, ok := maxAge(t, raw); c.Value != "" || !ok || n != 0 {
		t.Fatalf("want a removal cookie, got %q", raw)
	}
}

func TestInsertSession(t *testing.T) {
	rec := do(t, app(t, core.NewMemoryStore(), hour), "/insert", "")
	c, raw := sessionCookie(t, rec)
	if c.Name != "id" {
		t.Errorf("name %q", c.Name)
	}
	if _, err := core.ParseToken(c.Value); err != nil {
		t.Errorf("value %q is not a token", c.Value)
	}
	if !c.HttpOnly || !hasAttr(raw, "HttpOnly") {
		t.Errorf("not HttpOnly: %q", raw)
	}
	if c.SameSite != http.SameSiteStrictMode {
		t.Errorf("SameSite %v in %q", c.SameSite, raw)
	}
	if n, ok := maxAge(t, raw); !ok || n <= 0 || n > 3600 {
		t.Errorf("Max-Age in %q: want 0 < n <= 3600", raw)
	}
	if !c.Secure {
		t.Errorf("not Secure: %q", raw)
	}
	if c.Path != "/" {
		t.Errorf("Path %q", c.Path)
	}
	if c.Domain != "" {
		t.Errorf("Domain %q, want none", c.Domain)
	}
	if got := rec.Header().Get("Vary"); got != "Cookie" {
		t.Errorf("Vary %q", got)
	}
	if got := rec.Header().Get("Cache-Control"); got != "private" {
		t.Errorf("Cache-Control %q", got)
	}
}

func TestSessionMaxAge(t *testing.T) {
	rec := do(t, app(t, core.NewMemoryStore()), "/insert", "")
	c, raw := sessionCookie(t, rec)
	if c.Name != "id" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !c.Secure || c.Path != "/" {
		t.Errorf("attributes: %q", raw)
	}
	if _, ok := maxAge(t, raw); ok || strings.Contains(raw, "Expires") {
		t.Errorf("a session-end cookie must have no Max-Age nor Expires: %q", raw)
	}
}

func TestGetSession(t *testing.T) {
	h := app(t, core.NewMemoryStore(), hour)
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	rec := do(t, h, "/get", pair(c))
	if rec.Code != http.StatusOK || rec.Body.String() != "42" {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	noCookie(t, rec)
}

func TestGetNoValue(t *testing.T) {
	rec := do(t, app(t, core.NewMemoryStore(), hour), "/get_value", "")
	if rec.Body.String() != "None" {
		t.Fatalf("body %q", rec.Body)
	}
	noCookie(t, rec)
}

func TestRemoveLastValue(t *testing.T) {
	store := core.NewMemoryStore()
	h := app(t, store, hour)
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	rec := do(t, h, "/remove_value", pair(c))
	// The session is now empty, so it is deleted and its cookie removed.
	removal, raw := sessionCookie(t, rec)
	if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 {
		t.Fatalf("want a removal cookie, got %q", raw)
	}
	if store.Len() != 0 {
		t.Fatalf("store holds %d records, want 0", store.Len())
	}
	if body := do(t, h, "/get_value", pair(c)).Body.String(); body != "None" {
		t.Fatalf("body %q", body)
	}
}

func TestCycleSessionID(t *testing.T) {
	h := app(t, core.NewMemoryStore(), hour)
	first, _ := sessionCookie(t, do(t, h, "/insert", ""))
	second, _ := sessionCookie(t, do(t, h, "/cycle_id", pair(first)))
	if first.Value == second.Value {
		t.Fatal("cycle_id kept the token")
	}
	if body := do(t, h, "/get", pair(second)).Body.String(); body != "42" {
		t.Fatalf("data after cycle: %q", body)
	}
	if body := do(t, h, "/get_value", pair(first)).Body.String(); body != "None" {
		t.Fatalf("the old token still works: %q", body)
	}
}

func TestFlushSession(t *testing.T) {
	h := app(t, core.NewMemoryStore(), hour)
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	removal, raw := sessionCookie(t, do(t, h, "/flush", pair(c)))
	if removal.Value != "" {
		t.Errorf("value %q", removal.Value)
	}
	if n, ok := maxAge(t, raw); !ok || n != 0 {
		t.Errorf("Max-Age in %q, want 0", raw)
	}
	if removal.Path != "/" {
		t.Errorf("Path %q", removal.Path)
	}
	if !removal.Expires.Before(time.Now()) {
		t.Errorf("Expires %v is not in the past", removal.Expires)
	}
}

func TestFlushWithDomain(t *testing.T) {
	h := app(t, core.NewMemoryStore(), hour, httpadapter.WithDomain("localhost"))
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	removal, raw := sessionCookie(t, do(t, h, "/flush", pair(c)))
	if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 {
		t.Errorf("not a removal cookie: %q", raw)
	}
	if removal.Domain != "localhost" || removal.Path != "/" {
		t.Errorf("Domain %q Path %q", removal.Domain, removal.Path)
	}
}

func TestSetExpiry(t *testing.T) {
	h := app(t, core.NewMemoryStore(), hour, httpadapter.WithDomain("localhost"))
	c, raw := sessionCookie(t, do(t, h, "/insert", ""))
	n, _ := maxAge(t, raw)
	within(t, n, 3600)
	c2, raw := sessionCookie(t, do(t, h, "/set_expiry", pair(c)))
	n, _ = maxAge(t, raw)
	within(t, n, 86400)
	if c2.Value != c.Value {
		t.Error("set_expiry changed the token")
	}
}

func TestChangeExpiryType(t *testing.T) {
	t.Run("session end to date-time", func(t *testing.T) {
		h := app(t, core.NewMemoryStore(), httpadapter.WithDomain("localhost"))
		c, raw := sessionCookie(t, do(t, h, "/insert", ""))
		if _, ok := maxAge(t, raw); ok {
			t.Fatalf("Max-Age in %q", raw)
		}
		_, raw = sessionCookie(t, do(t, h, "/set_expiry", pair(c)))
		n, ok := maxAge(t, raw)
		if !ok {
			t.Fatalf("no Max-Age in %q", raw)
		}
		within(t, n, 86400)
	})
	t.Run("inactivity to session end", func(t *testing.T) {
		h := app(t, core.NewMemoryStore(), hour, httpadapter.WithDomain("localhost"))
		c, raw := sessionCookie(t, do(t, h, "/insert", ""))
		n, _ := maxAge(t, raw)
		within(t, n, 3600)
		_, raw = sessionCookie(t, do(t, h, "/remove_expiry", pair(c)))
		if _, ok := maxAge(t, raw); ok {
			t.Fatalf("Max-Age in %q", raw)
		}
	})
}

func TestExpiredSessionAfter1s(t *testing.T) {
	clk := newClock()
	h := appClock(t, core.NewMemoryStore(), clk, httpadapter.WithExpiry(core.OnInactivity(time.Second)))
	c, raw := sessionCookie(t, do(t, h, "/insert", ""))
	if n, _ := maxAge(t, raw); n != 1 {
		t.Fatalf("Max-Age %d, want 1", n)
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "42" {
		t.Fatalf("before expiry: %q", body)
	}
	clk.Advance(time.Second)
	rec := do(t, h, "/get_value", pair(c))
	if rec.Body.String() != "None" {
		t.Fatalf("after expiry: %q", rec.Body)
	}
	removal, raw := sessionCookie(t, rec)
	if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 {
		t.Fatalf("want a removal cookie for the expired session, got %q", raw)
	}
}

func TestAlwaysSave(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expiry func(now time.Time) core.Expiry
		maxAge int // -1: none
		renews bool
	}{
		{"session end", func(time.Time) core.Expiry { return core.OnSessionEnd() }, -1, true},
		{"inactivity", func(time.Time) core.Expiry { return core.OnInactivity(2 * time.Hour) }, 7200, true},
		{"date-time", func(now time.Time) core.Expiry { return core.AtDateTime(now.Add(7 * 24 * time.Hour)) }, 7*24*3600 - 60, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			store := newCountingStore()
			h := appClock(t, store, clk, httpadapter.WithExpiry(tc.expiry(clk.Now())), httpadapter.WithAlwaysSave(true))
			c1, _ := sessionCookie(t, do(t, h, "/insert", ""))
			rec1 := recordOf(t, store, c1.Value, clk.Now())
			clk.Advance(time.Minute)
			saves := store.saves.Load()
			// "/" does not touch the session: only always-save writes it.
			rec := do(t, h, "/", pair(c1))
			c2, raw := sessionCookie(t, rec)
			if c2.Value != c1.Value {
				t.Fatal("always-save changed the token")
			}
			if got := store.saves.Load() - saves; got != 1 {
				t.Fatalf("%d saves, want 1", got)
			}
			n, ok := maxAge(t, raw)
			if tc.maxAge < 0 && ok {
				t.Fatalf("Max-Age in %q", raw)
			}
			if tc.maxAge >= 0 {
				if !ok {
					t.Fatalf("no Max-Age in %q", raw)
				}
				within(t, n, tc.maxAge)
			}
			rec2 := recordOf(t, store, c2.Value, clk.Now())
			if tc.renews && !rec2.Expiry.After(rec1.Expiry) {
				t.Fatalf("expiry not renewed: %v then %v", rec1.Expiry, rec2.Expiry)
			}
			if !tc.renews && !rec2.Expiry.Equal(rec1.Expiry) {
				t.Fatalf("a date-time expiry moved: %v then %v", rec1.Expiry, rec2.Expiry)
			}
		})
	}
}

func TestCookieName(t *testing.T) {
	h := app(t, core.NewMemoryStore(), httpadapter.WithCookieName("my.sid"))
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	if c.Name != "my.sid" {
		t.Fatalf("name %q", c.Name)
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "42" {
		t.Fatalf("session not found under the custom name: %q", body)
	}
	// A cookie with the default name is not ours any more.
	if body := do(t, h, "/get_value", "id="+c.Value).Body.String(); body != "None" {
		t.Fatalf("read the session through the wrong name: %q", body)
	}
}

func TestHTTPOnly(t *testing.T) {
	for _, on := range []bool{true, false} {
		_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithHTTPOnly(on)), "/insert", ""))
		if hasAttr(raw, "HttpOnly") != on {
			t.Errorf("HttpOnly(%v): %q", on, raw)
		}
	}
}

func TestSameSite(t *testing.T) {
	for mode, attr := range map[http.SameSite]string{
		http.SameSiteStrictMode: "SameSite=Strict",
		http.SameSiteLaxMode:    "SameSite=Lax",
		http.SameSiteNoneMode:   "SameSite=None",
	} {
		_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithSameSite(mode)), "/insert", ""))
		if !hasAttr(raw, attr) || strings.Count(raw, "SameSite") != 1 {
			t.Errorf("want %s: %q", attr, raw)
		}
	}
	_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithSameSite(http.SameSiteDefaultMode)), "/insert", ""))
	if strings.Contains(raw, "SameSite") {
		t.Errorf("default mode must omit SameSite: %q", raw)
	}
}

func TestSecure(t *testing.T) {
	for _, on := range []bool{true, false} {
		_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithSecure(on), httpadapter.WithSameSite(http.SameSiteLaxMode)), "/insert", ""))
		if hasAttr(raw, "Secure") != on {
			t.Errorf("Secure(%v): %q", on, raw)
		}
	}
}

func TestRemovalCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		secure, httpOnly bool
	}{{true, true}, {false, true}, {true, false}, {false, false}} {
		h := app(t, core.NewMemoryStore(), hour,
			httpadapter.WithSecure(tc.secure), httpadapter.WithHTTPOnly(tc.httpOnly),
			httpadapter.WithSameSite(http.SameSiteLaxMode), httpadapter.WithPath("/app"), httpadapter.WithDomain("example.com"))
		c, _ := sessionCookie(t, do(t, h, "/insert", ""))
		removal, raw := sessionCookie(t, do(t, h, "/flush", pair(c)))
		if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 {
			t.Errorf("not a removal cookie: %q", raw)
		}
		if hasAttr(raw, "Secure") != tc.secure || hasAttr(raw, "HttpOnly") != tc.httpOnly {
			t.Errorf("secure=%v httpOnly=%v: %q", tc.secure, tc.httpOnly, raw)
		}
		if removal.Path != "/app" || removal.Domain != "example.com" || removal.SameSite != http.SameSiteLaxMode {
			t.Errorf("removal cookie must keep Path, Domain and SameSite: %q", raw)
		}
	}
}

func TestPath(t *testing.T) {
	_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithPath("/foo/bar")), "/insert", ""))
	if !hasAttr(raw, "Path=/foo/bar") {
		t.Fatalf("%q", raw)
	}
}

func TestDomain(t *testing.T) {
	_, raw := sessionCookie(t, do(t, app(t, core.NewMemoryStore(), httpadapter.WithDomain("example.com")), "/insert", ""))
	if !hasAttr(raw, "Domain=example.com") {
		t.Fatalf("%q", raw)
	}
}

func TestSigned(t *testing.T) {
	h := app(t, core.NewMemoryStore(), httpadapter.WithSignedKeys(key(1)))
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	token, sig, ok := strings.Cut(c.Value, ".")
	if !ok || len(token) != core.TokenLen || sig == "" {
		t.Fatalf("signed value %q: want token.signature", c.Value)
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "42" {
		t.Fatalf("signed cookie not accepted: %q", body)
	}
	// The bare token, or the token with a wrong signature, is no cookie at all.
	for _, forged := range []string{token, token + ".AAAA", token + "." + strings.Repeat("A", len(sig))} {
		rec := do(t, h, "/get_value", "id="+forged)
		if rec.Body.String() != "None" {
			t.Errorf("forged %q accepted", forged)
		}
		noCookie(t, rec)
	}
}

func TestPrivate(t *testing.T) {
	store := core.NewMemoryStore()
	h := app(t, store, httpadapter.WithPrivateKeys(key(2)))
	c, _ := sessionCookie(t, do(t, h, "/insert", ""))
	if _, err := core.ParseToken(c.Value); err == nil || strings.Contains(c.Value, ".") {
		t.Fatalf("private value %q looks like a plain or signed token", c.Value)
	}
	if body := do(t, h, "/get", pair(c)).Body.String(); body != "42" {
		t.Fatalf("private cookie not accepted: %q", body)
	}
	// Encryption uses a random nonce: the same session gets a new value each time.
	c2, _ := sessionCookie(t, do(t, app(t, store, httpadapter.WithPrivateKeys(key(2)), httpadapter.WithAlwaysSave(true)), "/", pair(c)))
	if c2.Value == c.Value {
		t.Fatal("two encryptions of one token are equal: nonce reused")
	}
	tampered := []byte(c.Value)
	tampered[10] ^= 1
	rec := do(t, h, "/get_value", "id="+string(tampered))
	if rec.Body.String() != "None" {
		t.Fatalf("tampered private cookie accepted")
	}
	noCookie(t, rec)
}

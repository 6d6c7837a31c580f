package httpadapter_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// Planted cookies (issue 11.9): a sibling subdomain can put cookies of the
// session's name in front of the client's own. A valid session cookie
// anywhere in the header must win, and no removal cookie may delete it.

var cookieModes = []struct {
	name string
	opts []httpadapter.Option
}{
	{"plain", nil},
	{"signed", []httpadapter.Option{httpadapter.WithSignedKeys(key(5))}},
	{"private", []httpadapter.Option{httpadapter.WithPrivateKeys(key(6))}},
}

// deadCookies returns n distinct cookie values that verify in h's mode but
// name no session: the cookies of sessions created and flushed.
func deadCookies(t *testing.T, h http.Handler, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		c, _ := sessionCookie(t, do(t, h, "/insert", ""))
		do(t, h, "/flush", pair(c))
		out[i] = c.Value
	}
	return out
}

// forgedCookies returns n values that look like h's cookies but verify under
// no key (in plain mode: well-formed tokens of no session).
func forgedCookies(t *testing.T, mode string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		tok := must(core.NewToken(nil)).String()
		switch mode {
		case "signed":
			out[i] = tok + "." + strings.Repeat("A", 43)
		case "private":
			out[i] = strings.Repeat(string(rune('A'+i%26)), 67)
		default:
			out[i] = tok
		}
	}
	return out
}

func header(values []string, last ...string) string {
	parts := make([]string, 0, len(values)+len(last))
	for _, v := range values {
		parts = append(parts, "id="+v)
	}
	return strings.Join(append(parts, last...), "; ")
}

func TestPlantedCookiesBeforeAValidOne(t *testing.T) {
	for _, mode := range cookieModes {
		t.Run(mode.name, func(t *testing.T) {
			store := newCountingStore()
			h := app(t, store, mode.opts...)
			c, _ := sessionCookie(t, do(t, h, "/insert", ""))
			dead := deadCookies(t, h, 20)

			check := func(what string, planted []string, wantUsed bool) {
				t.Helper()
				before := store.loads.Load()
				rec := do(t, h, "/get_value", header(planted, pair(c)))
				got, want := rec.Body.String(), "None"
				if wantUsed {
					want = "Some(42)"
				}
				if got != want {
					t.Errorf("%s: body %q, want %q", what, got, want)
				}
				noCookie(t, rec) // above all no removal cookie
				if n := store.loads.Load() - before; n > core.MaxPresentedTokens {
					t.Errorf("%s: %d store loads, want at most %d", what, n, core.MaxPresentedTokens)
				}
			}
			check("8 planted", dead[:8], true)
			// Beyond the bound on lookups the valid cookie is not reached,
			// but it is not removed either.
			check("20 planted", dead, 21 <= core.MaxPresentedTokens)
			check("one planted 20 times", repeat(dead[0], 20), true)
			check("20 forged", forgedCookies(t, mode.name, 20), mode.name != "plain" || 21 <= core.MaxPresentedTokens)
			check("100 malformed", repeat("junk", 100), true)
			check("one planted 70 times", repeat(dead[0], 70), false)

			// With nothing but cookies of no session, the client's cookie goes.
			rec := do(t, h, "/get_value", header(dead[:3]))
			removal, raw := sessionCookie(t, rec)
			if n, ok := maxAge(t, raw); removal.Value != "" || !ok || n != 0 {
				t.Fatalf("only dead cookies: want a removal cookie, got %q", raw)
			}
		})
	}
}

func repeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

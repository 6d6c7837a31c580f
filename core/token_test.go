package core

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	for range 100 {
		tok, err := NewToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		s := tok.String()
		if len(s) != TokenLen {
			t.Fatalf("token %q has length %d", s, len(s))
		}
		back, err := ParseToken(s)
		if err != nil || !back.Equal(tok) {
			t.Fatalf("ParseToken(%q) = %v, %v", s, back, err)
		}
		if id := tok.ID(); !ValidID(id) || string(id) == s || back.ID() != id {
			t.Fatalf("bad id %q for token %q", id, s)
		}
	}
}

func TestParseTokenRejects(t *testing.T) {
	good := strings.Repeat("A", 22)
	if _, err := ParseToken(good); err != nil {
		t.Fatalf("ParseToken(%q): %v", good, err)
	}
	for _, bad := range []string{
		"", "A", strings.Repeat("A", 21), strings.Repeat("A", 23), strings.Repeat("A", 24),
		strings.Repeat("A", 21) + "B", // non-zero trailing bits: a second spelling of a token
		strings.Repeat("A", 20) + "==", strings.Repeat("A", 21) + "+", strings.Repeat("A", 21) + "/",
		strings.Repeat("A", 21) + "\x00", strings.Repeat("é", 11), strings.Repeat("A", 21) + " ",
	} {
		if tok, err := ParseToken(bad); err == nil || !tok.IsZero() {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
}

func TestZeroToken(t *testing.T) {
	var tok Token
	if !tok.IsZero() || tok.String() != "" || tok.ID() != "" {
		t.Fatal("zero token is not empty")
	}
	if ValidID("") || ValidID(ID(strings.Repeat("A", 44))) {
		t.Fatal("ValidID accepted a malformed id")
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"", strings.Repeat("A", 22), strings.Repeat("_", 22), "AAAAAAAAAAAAAAAAAAAAAB", "%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("ParseToken(%q) round-trips to %q", s, tok.String())
		}
	})
}

func TestIDDerivation(t *testing.T) {
	// The ID is the first 128 bits of SHA-256 over the token's 16 bytes, in
	// unpadded base64url: pinned, because changing it orphans every stored
	// session.
	tok, err := ParseToken("AAECAwQFBgcICQoLDA0ODw") // bytes 0x00..0x0f
	if err != nil {
		t.Fatal(err)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(i)
	}
	sum := sha256.Sum256(b[:])
	want := ID(base64.RawURLEncoding.EncodeToString(sum[:16]))
	if got := tok.ID(); got != want || len(got) != IDLen || !ValidID(got) {
		t.Fatalf("ID = %q, want %q (%d characters)", got, want, IDLen)
	}
	// The 43-character form of earlier versions is not an ID.
	if ValidID(ID(base64.RawURLEncoding.EncodeToString(sum[:]))) {
		t.Error("ValidID accepted a whole-digest id")
	}
}

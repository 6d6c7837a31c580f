package httpadapter

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
)

// TestKeysAreDerived: the HMAC key is HKDF-SHA256 of the whole secret with
// the signing info string, not the secret itself, and a secret longer than
// KeyLen counts in full.
func TestKeysAreDerived(t *testing.T) {
	secret := bytes.Repeat([]byte("0123456789abcdef"), 4) // 64 bytes
	tok := fuzzToken(t)
	value := fuzzCodec(t, WithSignedKeys(secret)).encode(tok)
	_, sig, _ := strings.Cut(value, ".")

	raw := hmac.New(sha256.New, secret[:KeyLen])
	raw.Write([]byte("id=" + tok))
	if sig == base64.RawURLEncoding.EncodeToString(raw.Sum(nil)) {
		t.Fatal("the secret is used as the HMAC key directly")
	}
	k, err := hkdf.Key(sha256.New, secret, nil, signingInfo, 32)
	if err != nil {
		t.Fatal(err)
	}
	derived := hmac.New(sha256.New, k)
	derived.Write([]byte("id=" + tok))
	if sig != base64.RawURLEncoding.EncodeToString(derived.Sum(nil)) {
		t.Fatal("the MAC is not keyed with HKDF-SHA256(secret, signing info)")
	}

	// Secrets that share their first KeyLen bytes are different keys.
	other := append(bytes.Clone(secret[:KeyLen]), bytes.Repeat([]byte{'x'}, 32)...)
	for _, opt := range []func(...[]byte) Option{WithSignedKeys, WithPrivateKeys} {
		v := fuzzCodec(t, opt(secret)).encode(tok)
		if got, ok := fuzzCodec(t, opt(secret)).decode(v); !ok || got != tok {
			t.Fatalf("a 64-byte secret does not round-trip: %q %v", got, ok)
		}
		if _, ok := fuzzCodec(t, opt(other)).decode(v); ok {
			t.Fatal("a secret is cut to its first 32 bytes")
		}
	}

	// One secret, two purposes, two keys.
	sk, err := deriveKey(secret, signingInfo, "signing", 0)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := deriveKey(secret, encryptionInfo, "encryption", 0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sk, ek) || len(sk) != 32 || len(ek) != 32 {
		t.Fatalf("signing key %x, encryption key %x: want two different 32-byte keys", sk, ek)
	}
}

func TestShortSecretNamesTheMinimum(t *testing.T) {
	for _, opt := range []func(...[]byte) Option{WithSignedKeys, WithPrivateKeys} {
		_, err := New(core.NewMemoryStore(), opt(make([]byte, KeyLen), make([]byte, KeyLen-1)))
		if err == nil || !strings.Contains(err.Error(), "key 1 is 31 bytes") || !strings.Contains(err.Error(), "at least 32 bytes") {
			t.Fatalf("error %v: want one naming the key and the 32-byte minimum", err)
		}
	}
}

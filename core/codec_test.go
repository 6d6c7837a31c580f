package core

import (
	"errors"
	"testing"
)

func TestJSONMapRoundTrip(t *testing.T) {
	m := map[string][]byte{"a": []byte(`1`), "b": []byte(`{"x":[1,2]}`), "ключ": []byte(`"v"`)}
	b, err := JSON.EncodeMap(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := JSON.DecodeMap(b)
	if err != nil || len(back) != 3 || string(back["b"]) != `{"x":[1,2]}` {
		t.Fatalf("DecodeMap = %q, %v", back, err)
	}
}

func TestJSONDecodeMapCorrupt(t *testing.T) {
	for _, bad := range []string{"", "{", "[1]", `{"a":}`, `{"a":1} {}`, "\xff"} {
		if _, err := JSON.DecodeMap([]byte(bad)); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("DecodeMap(%q) = %v, want ErrCorruptRecord", bad, err)
		}
	}
}

func FuzzJSONDecodeMap(f *testing.F) {
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := JSON.DecodeMap(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
			}
			return
		}
		if _, err := JSON.EncodeMap(m); err != nil {
			t.Fatalf("decoded map does not encode again: %v", err)
		}
	})
}

package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Codec encodes session values and the record blob that holds them. A store
// chooses its codec (bunstore: MessagePack); the Session encodes values with
// the store's codec, so values are checked at Insert and the blob stays
// self-describing: a map of key to value that a tool can print without
// knowing Go types.
type Codec interface {
	// Name identifies the format, e.g. "json" or "msgpack".
	Name() string
	// Marshal encodes one value.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes one value produced by Marshal into dst, a pointer.
	Unmarshal(data []byte, dst any) error
	// EncodeMap encodes a record's data: values are already encoded and are
	// embedded as they are.
	EncodeMap(m map[string][]byte) ([]byte, error)
	// DecodeMap is the inverse of EncodeMap. It returns an error wrapping
	// ErrCorruptRecord for anything EncodeMap could not have produced.
	DecodeMap(b []byte) (map[string][]byte, error)
}

// KeyValidator is implemented by a Codec that cannot store every string as
// a session key; the Session calls ValidKey at Insert and Update, so such a
// key is refused there instead of being rewritten when the record is
// encoded.
type KeyValidator interface {
	ValidKey(key string) error
}

// ErrCorruptRecord marks a stored record that cannot be decoded. The
// middleware treats such a session as absent (and logs it) rather than
// failing every request that carries its cookie.
var ErrCorruptRecord = errors.New("sqlsessions: corrupt session record")

// ErrInvalidUTF8 is returned by the JSON codec for a key or a string value
// that is not valid UTF-8: encoding/json would silently replace its bytes
// with U+FFFD, so two different keys could become one and a value would not
// come back as stored. Encode binary data as []byte (base64 in JSON), or use
// a codec that keeps bytes, such as bunstore's MessagePack.
var ErrInvalidUTF8 = errors.New("sqlsessions: JSON cannot store a string that is not valid UTF-8 (use []byte for binary data)")

// JSON is the standard-library JSON codec. Values round-trip as encoding/json
// round-trips them into the destination's type. Keys and string values must
// be valid UTF-8 (ErrInvalidUTF8): JSON cannot hold anything else without
// rewriting it.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) || replacedInvalidUTF8(b) {
		return nil, ErrInvalidUTF8
	}
	return b, nil
}

// ValidKey implements KeyValidator.
func (jsonCodec) ValidKey(key string) error {
	if !utf8.ValidString(key) {
		return ErrInvalidUTF8
	}
	return nil
}

// replacedInvalidUTF8 reports whether encoding/json's output b holds the
// escape \ufffd in a string: json.Marshal writes that escape only where the
// input had bytes that are not UTF-8 (a real U+FFFD is written as itself).
func replacedInvalidUTF8(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "fffd" {
			return true
		}
		i++ // skip the escaped character, so an escaped backslash never starts an escape
	}
	return false
}

func (jsonCodec) Unmarshal(data []byte, dst any) error { return json.Unmarshal(data, dst) }

func (jsonCodec) EncodeMap(m map[string][]byte) ([]byte, error) {
	raw := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("session key %q: %w", k, ErrInvalidUTF8)
		}
		raw[k] = v
	}
	return json.Marshal(raw)
}

func (jsonCodec) DecodeMap(b []byte) (map[string][]byte, error) {
	var raw map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrCorruptRecord)
	}
	m := make(map[string][]byte, len(raw))
	for k, v := range raw {
		m[k] = v
	}
	return m, nil
}

package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// ErrCorruptRecord marks a stored record that cannot be decoded. The
// middleware treats such a session as absent (and logs it) rather than
// failing every request that carries its cookie.
var ErrCorruptRecord = errors.New("sqlsessions: corrupt session record")

// JSON is the standard-library JSON codec. Values round-trip as encoding/json
// round-trips them into the destination's type.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte, dst any) error { return json.Unmarshal(data, dst) }

func (jsonCodec) EncodeMap(m map[string][]byte) ([]byte, error) {
	raw := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
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

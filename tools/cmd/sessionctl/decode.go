package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// decodeValue turns one stored session value into something encoding/json
// prints faithfully, without knowing the Go type it was encoded from.
// codec is the store codec's name ("msgpack" or "json"). A value that does
// not decode is shown as {"$undecodable": base64, "$error": reason}.
func decodeValue(codec string, b []byte) any {
	if codec == "json" {
		if json.Valid(b) {
			return json.RawMessage(b)
		}
		return undecodable(b, fmt.Errorf("not valid JSON"))
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetMapDecoder(decodeAnyMap)
	v, err := dec.DecodeInterface()
	if err != nil {
		return undecodable(b, err)
	}
	return jsonable(v)
}

// decodeAnyMap decodes a MessagePack map whose keys may be of any type (Go
// maps with int keys, say) into a map with string keys; msgpack's default
// assumes string keys, and its untyped map cannot hold unhashable keys.
func decodeAnyMap(d *msgpack.Decoder) (any, error) {
	n, err := d.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	m := make(map[string]any, min(n, 1024))
	for range n {
		k, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		v, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		m[keyString(jsonable(k))] = v
	}
	return m, nil
}

func undecodable(b []byte, err error) map[string]any {
	return map[string]any{"$undecodable": base64.StdEncoding.EncodeToString(b), "$error": err.Error()}
}

// jsonable converts what msgpack's DecodeInterface returns into values
// encoding/json accepts: maps with any keys become objects with string keys,
// binary becomes base64 strings, timestamps RFC 3339 strings, and floats that
// JSON cannot hold (NaN, ±Inf) strings.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[keyString(k)] = jsonable(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = jsonable(e)
		}
		return s
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return jsonFloat(x)
	case float32:
		return jsonFloat(float64(x))
	}
	return v
}

func jsonFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f)
	}
	return f
}

func keyString(k any) string {
	switch x := k.(type) {
	case string:
		return x
	}
	if b, err := json.Marshal(k); err == nil {
		return string(b) // numbers, booleans; arrays and maps as JSON
	}
	return fmt.Sprint(k)
}

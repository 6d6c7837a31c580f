package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeValue(t *testing.T) {
	type inner struct {
		When time.Time
		Tags map[string][]int
	}
	cases := []struct {
		name string
		v    any
		want string // JSON
	}{
		{"string", "héllo \"x\"", `"héllo \"x\""`},
		{"int", 42, `42`},
		{"uint64 max", uint64(math.MaxUint64), `18446744073709551615`},
		{"int64 min", int64(math.MinInt64), `-9223372036854775808`},
		{"float", 1.25, `1.25`},
		{"float32", float32(0.5), `0.5`},
		{"NaN", math.NaN(), `"NaN"`},
		{"+Inf", math.Inf(1), `"+Inf"`},
		{"bool", false, `false`},
		{"nil", nil, `null`},
		{"bytes", []byte("hi"), `"aGk="`},
		{"time", time.Date(2030, 5, 6, 7, 8, 9, 10, time.FixedZone("X", 3600)), `"2030-05-06T06:08:09.00000001Z"`},
		{"slice", []any{1, "a", nil}, `[1, "a", null]`},
		{"int keys", map[int]string{2: "b", 1: "a"}, `{"1": "a", "2": "b"}`},
		{"bool keys", map[bool]int{true: 1}, `{"true": 1}`},
		{"nested", map[string]any{"in": inner{When: time.Unix(0, 0), Tags: map[string][]int{"x": {1, 2}}}},
			`{"in": {"When": "1970-01-01T00:00:00Z", "Tags": {"x": [1, 2]}}}`},
		{"empty map", map[string]int{}, `{}`},
		{"nil map", map[string]int(nil), `null`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := bunstore.MsgPack.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(decodeValue("msgpack", b))
			if err != nil {
				t.Fatalf("the decoded value does not encode as JSON: %v", err)
			}
			if !jsonEqual(t, string(got), c.want) {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// A value the tool cannot decode (an extension type registered only in the
// application, or garbage) is shown raw instead of failing the whole record.
func TestDecodeValueUndecodable(t *testing.T) {
	ext := []byte{0xd4, 0x42, 0x07} // fixext1, type 0x42: unknown here
	for _, b := range [][]byte{ext, {0xc1}, {0xa5, 'a'}} {
		v := decodeValue("msgpack", b)
		m, ok := v.(map[string]any)
		if !ok || m["$undecodable"] == nil || m["$error"] == nil {
			t.Errorf("%x: got %#v, want an $undecodable object", b, v)
			continue
		}
		if _, err := json.Marshal(v); err != nil {
			t.Errorf("%x: %v", b, err)
		}
	}
	// A map with a binary key (unhashable in Go) does not panic.
	var sb strings.Builder
	enc := msgpack.NewEncoder(&sb)
	if err := enc.EncodeMapLen(1); err != nil {
		t.Fatal(err)
	}
	enc.EncodeBytes([]byte("k"))
	enc.EncodeInt(1)
	got, err := json.Marshal(decodeValue("msgpack", []byte(sb.String())))
	if err != nil || string(got) != `{"aw==":1}` {
		t.Errorf("binary key: %s, %v", got, err)
	}
}

// The JSON codec's values are printed as they are stored.
func TestDecodeValueJSONCodec(t *testing.T) {
	b, err := core.JSON.Marshal(map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(decodeValue(core.JSON.Name(), b))
	if err != nil || string(got) != `{"a":1}` {
		t.Errorf("got %s, %v", got, err)
	}
	if m, ok := decodeValue("json", []byte("{")).(map[string]any); !ok || m["$undecodable"] == nil {
		t.Errorf("invalid JSON: got %#v", m)
	}
}

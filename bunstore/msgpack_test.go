package bunstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/vmihailenco/msgpack/v5"
)

type profile struct {
	Name  string
	Age   int
	Tags  []string
	Since time.Time
	Inner map[string]float64
}

func roundTrip[T any](t *testing.T, v T) {
	t.Helper()
	b, err := bunstore.MsgPack.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%v): %v", v, err)
	}
	var back T
	if err := bunstore.MsgPack.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%v): %v", v, err)
	}
	if tv, ok := any(v).(time.Time); ok {
		if !tv.Equal(any(back).(time.Time)) {
			t.Fatalf("%v came back as %v", v, back)
		}
		return
	}
	if pv, ok := any(v).(profile); ok {
		// MessagePack timestamps carry no zone: compare the instant.
		pb := any(back).(profile)
		if !pv.Since.Equal(pb.Since) {
			t.Fatalf("%v came back as %v", pv.Since, pb.Since)
		}
		pv.Since, pb.Since = time.Time{}, time.Time{}
		v, back = any(pv).(T), any(pb).(T)
	}
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("%#v came back as %#v", v, back)
	}
}

func TestMsgPackValues(t *testing.T) {
	roundTrip(t, 42)
	roundTrip(t, -1)
	roundTrip(t, int64(math.MinInt64))
	roundTrip(t, uint64(math.MaxUint64))
	roundTrip(t, uint8(7))
	roundTrip(t, 3.5)
	roundTrip(t, "héllo")
	roundTrip(t, []byte{0, 1, 2})
	roundTrip(t, true)
	roundTrip(t, []int{1, 2, 3})
	roundTrip(t, map[string]int{"a": 1})
	roundTrip(t, time.Date(2040, 1, 2, 3, 4, 5, 123456789, time.UTC))
	roundTrip(t, profile{Name: "Ada", Age: 36, Tags: []string{"x"}, Since: time.Date(1843, 7, 1, 0, 0, 0, 0, time.UTC), Inner: map[string]float64{"pi": 3.14}})
	if bunstore.MsgPack.Name() != "msgpack" {
		t.Error(bunstore.MsgPack.Name())
	}
}

func TestMsgPackMap(t *testing.T) {
	c := bunstore.MsgPack
	for _, n := range []int{0, 1, 15, 16, 70000} {
		m := map[string][]byte{}
		for i := range n {
			v, _ := c.Marshal(i)
			m[strings.Repeat("k", i%40)+strconv.Itoa(i)] = v
		}
		b, err := c.EncodeMap(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.DecodeMap(b)
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		if len(back) != len(m) {
			t.Fatalf("%d entries came back as %d", len(m), len(back))
		}
		for k, v := range m {
			if !bytes.Equal(back[k], v) {
				t.Fatalf("key %q: %x != %x", k, back[k], v)
			}
		}
		// Deterministic: equal maps give equal blobs.
		b2, _ := c.EncodeMap(m)
		if !bytes.Equal(b, b2) {
			t.Fatal("EncodeMap is not deterministic")
		}
		// Self-describing: a generic MessagePack decoder reads it.
		var generic map[string]any
		if err := msgpack.Unmarshal(b, &generic); err != nil || len(generic) != n {
			t.Fatalf("generic decode: %d keys, %v", len(generic), err)
		}
	}
	// Appending to one decoded value never overwrites the next.
	m := map[string][]byte{"a": {0x01}, "b": {0x02}}
	b, _ := c.EncodeMap(m)
	back, _ := c.DecodeMap(b)
	_ = append(back["a"], 0xff)
	if !bytes.Equal(back["b"], []byte{0x02}) {
		t.Fatal("values share capacity")
	}
}

func TestMsgPackEncodeMapRejectsBadValues(t *testing.T) {
	for _, v := range [][]byte{nil, {}, {0xc1}, {0x01, 0x02}, []byte(`{"json":1}`), {0x92, 0x01}} {
		if _, err := bunstore.MsgPack.EncodeMap(map[string][]byte{"k": v}); err == nil {
			t.Errorf("EncodeMap accepted value %x", v)
		}
	}
}

var corruptBlobs = [][]byte{
	nil, {}, {0xc0}, {0x90}, {0x01}, {0xc1},
	{0x81},                                   // map, no entries
	{0x81, 0x01, 0x01},                       // int key
	{0x81, 0xa1, 'k'},                        // no value
	{0x82, 0xa1, 'k', 0x01, 0xa1, 'k', 0x02}, // duplicate key
	{0x80, 0x00},                             // trailing byte
	{0xdf, 0xff, 0xff, 0xff, 0xff},           // 4G entries declared
	{0x81, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff},       // 4G-element array declared
	{0x81, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff},       // 4 GiB bin declared
	{0x81, 0xa1, 'k', 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, // 4 GiB ext declared
	{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff},                  // 4 GiB key declared
	[]byte(`{"k":"v"}`),
}

func TestMsgPackDecodeMapCorrupt(t *testing.T) {
	for _, b := range corruptBlobs {
		if m, err := bunstore.MsgPack.DecodeMap(b); !errors.Is(err, core.ErrCorruptRecord) {
			t.Errorf("DecodeMap(%x) = %v, %v; want ErrCorruptRecord", b, m, err)
		}
	}
	// A value nested millions deep (4 MB of 0x91, complete) would crash the
	// process when decoded into any: it is a corrupt record.
	deep := append([]byte{0x81, 0xa1, 'k'}, bytes.Repeat([]byte{0x91}, 4<<20)...)
	for _, b := range [][]byte{deep, append(deep, 0x01)} {
		if _, err := bunstore.MsgPack.DecodeMap(b); !errors.Is(err, core.ErrCorruptRecord) || !strings.Contains(err.Error(), "levels deep") {
			t.Errorf("nesting 4M deep: %v; want ErrCorruptRecord", err)
		}
	}
}

func TestMsgPackDepthLimit(t *testing.T) {
	nested := func(depth int) []byte {
		return append(bytes.Repeat([]byte{0x91}, depth), 0x01)
	}
	blob := func(v []byte) []byte { return append([]byte{0x81, 0xa1, 'k'}, v...) }
	m, err := bunstore.MsgPack.DecodeMap(blob(nested(bunstore.MaxDepth - 1)))
	if err != nil {
		t.Fatalf("nesting at the limit: %v", err)
	}
	var v any
	if err := bunstore.MsgPack.Unmarshal(m["k"], &v); err != nil {
		t.Fatalf("decoding a value at the limit into any: %v", err)
	}
	if _, err := bunstore.MsgPack.DecodeMap(blob(nested(bunstore.MaxDepth))); !errors.Is(err, core.ErrCorruptRecord) {
		t.Fatalf("nesting over the limit: %v", err)
	}
	if err := bunstore.MsgPack.Unmarshal(nested(bunstore.MaxDepth), &v); err == nil {
		t.Fatal("Unmarshal decoded a value over the limit")
	}
	// Insert refuses what Load would refuse.
	var deep any = 1
	for range bunstore.MaxDepth {
		deep = []any{deep}
	}
	if _, err := bunstore.MsgPack.Marshal(deep); err == nil || !strings.Contains(err.Error(), "levels deep") {
		t.Fatalf("Marshal of a value nested %d deep = %v", bunstore.MaxDepth+1, err)
	}
}

// FuzzDecodeMap: DecodeMap never panics, reports every failure as
// ErrCorruptRecord, and whatever it accepts re-encodes to a blob that
// decodes to the same map.
func FuzzDecodeMap(f *testing.F) {
	c := bunstore.MsgPack
	for _, b := range corruptBlobs {
		f.Add(b)
	}
	ts, _ := c.Marshal(time.Date(2040, 1, 1, 0, 0, 0, 1, time.UTC))
	p, _ := c.Marshal(profile{Name: "x", Tags: []string{"a"}})
	fl, _ := c.Marshal(1.5)
	for _, m := range []map[string][]byte{{}, {"k": {0x01}}, {"t": ts, "p": p, "f": fl, "": {0xc0}}} {
		b, _ := c.EncodeMap(m)
		f.Add(b)
	}
	jb, _ := json.Marshal(map[string]int{"a": 1})
	f.Add(jb)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := c.DecodeMap(b)
		if err != nil {
			if !errors.Is(err, core.ErrCorruptRecord) {
				t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
			}
			return
		}
		again, err := c.EncodeMap(m)
		if err != nil {
			t.Fatalf("re-encoding a decoded map: %v", err)
		}
		m2, err := c.DecodeMap(again)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("re-decoding: %v", err)
		}
		for k, v := range m {
			if !bytes.Equal(m2[k], v) {
				t.Fatalf("key %q changed", k)
			}
		}
	})
}

// FuzzUnmarshal: decoding any bytes into common destinations returns an
// error or a value, never a panic.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{1, "s", []int{1}, map[string]any{"a": 1.5}, profile{Name: "x"}, time.Unix(1, 2)} {
		b, _ := bunstore.MsgPack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a any
		_ = bunstore.MsgPack.Unmarshal(b, &a)
		var p profile
		_ = bunstore.MsgPack.Unmarshal(b, &p)
		var tm time.Time
		_ = bunstore.MsgPack.Unmarshal(b, &tm)
		var n int
		_ = bunstore.MsgPack.Unmarshal(b, &n)
	})
}

package bunstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/vmihailenco/msgpack/v5"
)

// MsgPack is the MessagePack codec, the store's default. Values are encoded
// with github.com/vmihailenco/msgpack/v5 and its default settings (struct
// fields by their `msgpack` tag or name; time.Time as the MessagePack
// timestamp extension, so it comes back as the same instant to the
// nanosecond, in time.Local since the extension carries no zone: compare
// times with Equal, or call UTC; integers decode back into the destination's
// type). A record's blob is a MessagePack
// map of key (string) to each value as it was encoded: any MessagePack tool
// can print it without knowing the Go types.
var MsgPack core.Codec = msgpackCodec{}

type msgpackCodec struct{}

func (msgpackCodec) Name() string { return "msgpack" }

// Marshal encodes v, refusing a value nested more than MaxDepth levels.
func (msgpackCodec) Marshal(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	if _, err := skipObject(b, 0); err != nil {
		return nil, fmt.Errorf("bunstore: msgpack: %w", err)
	}
	return b, nil
}

// Unmarshal decodes data, which must be exactly one MessagePack object, into
// dst. It checks the object's structure first, so declared lengths are
// bounded by the bytes present: a corrupt value is an error, never a huge
// allocation.
func (msgpackCodec) Unmarshal(data []byte, dst any) error {
	end, err := skipObject(data, 0)
	if err == nil && end != len(data) {
		err = fmt.Errorf("%d trailing bytes", len(data)-end)
	}
	if err != nil {
		return fmt.Errorf("bunstore: msgpack: malformed value: %w", err)
	}
	return msgpack.Unmarshal(data, dst)
}

// EncodeMap writes a map header, then each key (in sorted order, so equal
// maps give equal blobs) followed by its value as it is. Every value must be
// exactly one MessagePack object: EncodeMap refuses anything else, so a blob
// that cannot be decoded is never written.
func (msgpackCodec) EncodeMap(m map[string][]byte) ([]byte, error) {
	keys := make([]string, 0, len(m))
	size := 5
	for k, v := range m {
		if end, err := skipObject(v, 0); err != nil || end != len(v) {
			if err == nil {
				err = errors.New("trailing bytes")
			}
			return nil, fmt.Errorf("bunstore: msgpack: value of key %q is not one MessagePack object: %v", k, err)
		}
		keys = append(keys, k)
		size += 5 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = appendMapHeader(b, len(keys))
	for _, k := range keys {
		b = appendString(b, k)
		b = append(b, m[k]...)
	}
	return b, nil
}

// DecodeMap parses a blob written by EncodeMap. The values it returns share
// b's memory (capped, so appending to one never overwrites another): b must
// not be modified afterwards. Anything that is not a map of distinct string
// keys to well-formed MessagePack objects, with nothing after it, is an error
// wrapping core.ErrCorruptRecord.
func (msgpackCodec) DecodeMap(b []byte) (map[string][]byte, error) {
	n, i, err := readMapHeader(b, 0)
	if err != nil {
		return nil, corrupt(err)
	}
	// Each entry takes at least two bytes: never trust n for allocation.
	if n > (len(b)-i)/2 {
		return nil, corrupt(fmt.Errorf("map of %d entries in %d bytes", n, len(b)-i))
	}
	m := make(map[string][]byte, n)
	for range n {
		var k string
		k, i, err = readString(b, i)
		if err != nil {
			return nil, corrupt(err)
		}
		if _, dup := m[k]; dup {
			return nil, corrupt(fmt.Errorf("duplicate key %s", shortQuote(k)))
		}
		start := i
		i, err = skipObject(b, i)
		if err != nil {
			return nil, corrupt(fmt.Errorf("value of key %s: %w", shortQuote(k), err))
		}
		m[k] = b[start:i:i]
	}
	if i != len(b) {
		return nil, corrupt(fmt.Errorf("%d trailing bytes", len(b)-i))
	}
	return m, nil
}

func corrupt(err error) error {
	return fmt.Errorf("%w: msgpack: %v", core.ErrCorruptRecord, err)
}

var errShort = errors.New("unexpected end of data")

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

func appendString(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// readUint reads a big-endian unsigned integer of size bytes at b[i:].
func readUint(b []byte, i, size int) (uint64, int, error) {
	if len(b)-i < size {
		return 0, i, errShort
	}
	var v uint64
	for _, c := range b[i : i+size] {
		v = v<<8 | uint64(c)
	}
	return v, i + size, nil
}

func readMapHeader(b []byte, i int) (int, int, error) {
	if i >= len(b) {
		return 0, i, errShort
	}
	c := b[i]
	i++
	var n uint64
	var err error
	switch {
	case c&0xf0 == 0x80:
		return int(c & 0x0f), i, nil
	case c == 0xde:
		n, i, err = readUint(b, i, 2)
	case c == 0xdf:
		n, i, err = readUint(b, i, 4)
	default:
		return 0, i, fmt.Errorf("not a map (type byte 0x%02x)", c)
	}
	return int(n), i, err
}

func readString(b []byte, i int) (string, int, error) {
	if i >= len(b) {
		return "", i, errShort
	}
	c := b[i]
	i++
	var n uint64
	var err error
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, i, err = readUint(b, i, 1)
	case c == 0xda:
		n, i, err = readUint(b, i, 2)
	case c == 0xdb:
		n, i, err = readUint(b, i, 4)
	default:
		return "", i, fmt.Errorf("key is not a string (type byte 0x%02x)", c)
	}
	if err != nil {
		return "", i, err
	}
	if uint64(len(b)-i) < n {
		return "", i, errShort
	}
	return string(b[i : i+int(n)]), i + int(n), nil
}

// MaxDepth bounds how deeply arrays and maps may nest in a stored value.
// Decoding recurses once per level, so a value nested millions deep (a
// corrupt or hostile row) would exhaust the stack and kill the process: the
// codec refuses such a value when it is inserted and reports a stored one
// as a corrupt record. Sessions never need more than a few levels.
const MaxDepth = 1000

// skipObject returns the index just past the one MessagePack object that
// starts at b[i]. It is iterative (no recursion), bounds every declared
// length by the bytes that are left and nesting by MaxDepth.
func skipObject(b []byte, i int) (int, error) {
	// open[d] counts the objects still to skip at nesting level d.
	var openBuf [16]uint64
	open := append(openBuf[:0], 1)
	pending := uint64(1) // sum of open: every one takes at least a byte
	for len(open) > 0 {
		if open[len(open)-1] == 0 {
			open = open[:len(open)-1]
			continue
		}
		open[len(open)-1]--
		pending--
		if i >= len(b) {
			return i, errShort
		}
		c := b[i]
		i++
		var skip, children uint64 // payload bytes; nested objects
		var err error
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		case c&0xf0 == 0x80: // fixmap
			children = 2 * uint64(c&0x0f)
		case c&0xf0 == 0x90: // fixarray
			children = uint64(c & 0x0f)
		case c&0xe0 == 0xa0: // fixstr
			skip = uint64(c & 0x1f)
		case c == 0xc4, c == 0xd9: // bin8, str8
			skip, i, err = readUint(b, i, 1)
		case c == 0xc5, c == 0xda: // bin16, str16
			skip, i, err = readUint(b, i, 2)
		case c == 0xc6, c == 0xdb: // bin32, str32
			skip, i, err = readUint(b, i, 4)
		case c == 0xc7: // ext8: length, type, data
			skip, i, err = readUint(b, i, 1)
			skip++
		case c == 0xc8: // ext16
			skip, i, err = readUint(b, i, 2)
			skip++
		case c == 0xc9: // ext32
			skip, i, err = readUint(b, i, 4)
			skip++
		case c == 0xca, c == 0xce, c == 0xd2: // float32, uint32, int32
			skip = 4
		case c == 0xcb, c == 0xcf, c == 0xd3: // float64, uint64, int64
			skip = 8
		case c == 0xcc, c == 0xd0: // uint8, int8
			skip = 1
		case c == 0xcd, c == 0xd1: // uint16, int16
			skip = 2
		case c == 0xd4: // fixext1: type + 1
			skip = 2
		case c == 0xd5:
			skip = 3
		case c == 0xd6:
			skip = 5
		case c == 0xd7:
			skip = 9
		case c == 0xd8:
			skip = 17
		case c == 0xdc: // array16
			children, i, err = readUint(b, i, 2)
		case c == 0xdd: // array32
			children, i, err = readUint(b, i, 4)
		case c == 0xde: // map16
			children, i, err = readUint(b, i, 2)
			children *= 2
		case c == 0xdf: // map32
			children, i, err = readUint(b, i, 4)
			children *= 2
		default: // 0xc1 is never used
			return i, fmt.Errorf("invalid type byte 0x%02x", c)
		}
		if err != nil {
			return i, err
		}
		rest := uint64(len(b) - i)
		if skip > rest {
			return i, errShort
		}
		i += int(skip)
		// Every pending object takes at least one byte.
		if children > rest || pending+children > rest {
			return i, errShort
		}
		if children > 0 {
			if len(open) >= MaxDepth {
				return i, fmt.Errorf("nested more than %d levels deep", MaxDepth)
			}
			open = append(open, children)
			pending += children
		}
	}
	return i, nil
}

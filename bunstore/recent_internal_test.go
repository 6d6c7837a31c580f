package bunstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

func TestRecentWritesBounded(t *testing.T) {
	r := newRecentWrites(64)
	exp := time.Now()
	for i := range 10_000 {
		r.put(core.ID(fmt.Sprintf("id-%05d", i)), 1, []byte{0x80}, exp, time.Time{}, "")
	}
	total := 0
	for i := range r.shards {
		n := len(r.shards[i].m)
		if n > r.perShard {
			t.Errorf("shard %d holds %d entries, limit %d", i, n, r.perShard)
		}
		total += n
	}
	if total > 64 || total < 32 {
		t.Errorf("%d entries remembered, want about 64", total)
	}
	if newRecentWrites(0) != nil {
		t.Error("newRecentWrites(0) is not off")
	}
	var off *recentWrites // off: every method is a no-op
	off.put("x", 1, nil, exp, time.Time{}, "")
	off.forget("x")
	if _, ok := off.newer("x", 0); ok {
		t.Error("a disabled cache remembered something")
	}
}

func TestRecentWritesKeepsNewest(t *testing.T) {
	r := newRecentWrites(16)
	exp := time.Now()
	r.put("a", 3, []byte("v3"), exp, time.Time{}, "")
	r.put("a", 2, []byte("v2"), exp, time.Time{}, "") // finished later, but older
	if w, ok := r.newer("a", 1); !ok || w.version != 3 || string(w.blob) != "v3" {
		t.Errorf("newer = %+v, %v; want version 3", w, ok)
	}
	if _, ok := r.newer("a", 3); ok {
		t.Error("version 3 is not newer than 3")
	}
	r.put("a", 4, make([]byte, maxRecentBlob+1), exp, time.Time{}, "")
	if _, ok := r.newer("a", 0); ok {
		t.Error("an oversized write left the older entry behind")
	}
	r.put("b", 1, []byte("v1"), exp, time.Time{}, "")
	r.forget("b")
	if _, ok := r.newer("b", 0); ok {
		t.Error("forget kept the entry")
	}
}

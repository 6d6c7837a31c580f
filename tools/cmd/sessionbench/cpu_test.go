package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestProcCPU(t *testing.T) {
	// A command name with spaces and parentheses, as the kernel writes it;
	// utime 250 and stime 50 ticks are 3 s.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 10000 100 18446744073709551615\n"
	path := filepath.Join(t.TempDir(), "stat")
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	got, ok := procCPU(path)
	if !ok || got != 3*time.Second {
		t.Errorf("procCPU = %v, %v; want 3s, true", got, ok)
	}
	for _, bad := range []string{"", "4242 no parens", "4242 (x) S 1 2"} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, ok := procCPU(path); ok {
			t.Errorf("procCPU(%q) = %v, true; want false", bad, got)
		}
	}
}

func TestReadCPUCountsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU times come from /proc")
	}
	before := readCPU()
	if !before.ok {
		t.Fatal("cannot read /proc/self/stat")
	}
	// Burn well over one clock tick of CPU.
	deadline := time.Now().Add(200 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	d := readCPU().sub(before)
	if !d.ok || d.self < 50*time.Millisecond {
		t.Errorf("%d loops: this process used %v of CPU, want at least 50ms", x, d.self)
	}
}

// TestSampleAddsCosts: a workload's total sums its rounds' costs, and keeps
// the /proc figures only if every round had them.
func TestSampleAddsCosts(t *testing.T) {
	round := func(ok bool) sample {
		return sample{requests: 10, elapsed: time.Second, cpu: cpuTimes{
			self: time.Millisecond, db: 2 * time.Millisecond, ok: ok,
			allocs: 100, allocBytes: 1000, gc: time.Microsecond, reads: 5, writes: 3,
		}}
	}
	var total sample
	total.add(round(true))
	total.add(round(true))
	want := cpuTimes{self: 2 * time.Millisecond, db: 4 * time.Millisecond, ok: true,
		allocs: 200, allocBytes: 2000, gc: 2 * time.Microsecond, reads: 10, writes: 6}
	if total.cpu != want || total.requests != 20 || total.elapsed != 2*time.Second {
		t.Fatalf("two rounds add to %+v, want %+v", total, want)
	}
	for _, rounds := range [][]bool{{true, false}, {false, true}, {false}} {
		var total sample
		for _, ok := range rounds {
			total.add(round(ok))
		}
		var r ServerResult
		r.setCosts(total)
		if total.cpu.ok || r.AppCPUMicros != 0 || r.ReadCallsPerRequest != 0 {
			t.Errorf("rounds with /proc %v: %+v, costs %+v; want no CPU figures", rounds, total.cpu, r)
		}
		if r.AllocsPerRequest != 10 {
			t.Errorf("rounds with /proc %v: %v allocations per request, want 10", rounds, r.AllocsPerRequest)
		}
	}
}

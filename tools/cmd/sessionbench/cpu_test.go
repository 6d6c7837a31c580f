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

func TestProcessCostsCountThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU times come from /proc")
	}
	before, err := processCosts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn well over one clock tick of CPU (as the scheduler allows: on a
	// loaded machine 200 ms of wall time may give far less), and make a
	// few system calls.
	var used roundCosts
	x := 0
	for deadline := time.Now().Add(10 * time.Second); used.cpu < 60*time.Millisecond && time.Now().Before(deadline); {
		for range 1 << 20 {
			x++
		}
		now, err := processCosts(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		used.cpu = now.since(before).cpu
	}
	for range 10 {
		if _, err := os.ReadFile("/proc/self/stat"); err != nil {
			t.Fatal(err)
		}
	}
	after, err := processCosts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	d := after.since(before)
	if d.cpu < 50*time.Millisecond || d.reads < 10 {
		t.Errorf("%d loops: this process used %v of CPU and %d reads, want at least 50ms and 10", x, d.cpu, d.reads)
	}
	if _, err := processCosts(-1); err == nil {
		t.Error("processCosts(-1): no error")
	}
}

// TestDBCPUSince: a database's CPU over a round counts each process's
// difference and new processes whole, ignores ended ones, and a process
// whose time went down (a pid reused) is not negative.
func TestDBCPUSince(t *testing.T) {
	before := dbCPU{1: time.Second, 2: 2 * time.Second, 3: 3 * time.Second, 5: 5 * time.Second}
	after := dbCPU{1: 1500 * time.Millisecond, 2: 2 * time.Second, 4: 300 * time.Millisecond, 5: time.Second}
	if got, want := after.since(before), 800*time.Millisecond; got != want {
		t.Errorf("since = %v, want %v", got, want)
	}
}

// TestRoundCostsAdd: a workload's total sums its rounds' costs, each the
// difference of the readings around it.
func TestRoundCostsAdd(t *testing.T) {
	before := costs{cpu: time.Second, reads: 10, writes: 5, stats: processStats{Allocs: 100, AllocBytes: 1000, GCSeconds: 0.5, Statements: 7}, db: dbCPU{1: time.Second}}
	after := costs{cpu: 3 * time.Second, reads: 30, writes: 6, stats: processStats{Allocs: 400, AllocBytes: 4000, GCSeconds: 0.75, Statements: 10}, db: dbCPU{1: 4 * time.Second}}
	one := after.since(before)
	want := roundCosts{cpu: 2 * time.Second, db: 3 * time.Second, reads: 20, writes: 1, allocs: 300, allocBytes: 3000, gc: 250 * time.Millisecond, statements: 3}
	if one != want {
		t.Fatalf("one round: %+v, want %+v", one, want)
	}
	two := one.plus(one)
	if two != (roundCosts{cpu: 4 * time.Second, db: 6 * time.Second, reads: 40, writes: 2, allocs: 600, allocBytes: 6000, gc: 500 * time.Millisecond, statements: 6}) {
		t.Errorf("two rounds: %+v", two)
	}
}

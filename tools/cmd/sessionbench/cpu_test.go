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

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"time"
)

// cpuTimes is CPU time used so far by this process (the three servers and
// the load generator) and by the local database server's processes.
type cpuTimes struct {
	self, db time.Duration
	ok       bool // read from /proc (Linux); otherwise both are zero
	// allocs and allocBytes count heap allocations of this process (any
	// OS): the garbage the collector's CPU time is spent on.
	allocs, allocBytes uint64
	// gc is the CPU time the Go runtime estimates it spent collecting
	// garbage (part of self).
	gc time.Duration
	// reads and writes count this process's read and write system calls
	// (sockets included), from /proc/self/io.
	reads, writes uint64
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// dbProcessNames are the comm names of database server processes whose CPU
// counts as the database's: PostgreSQL names every backend "postgres".
var dbProcessNames = map[string]bool{"postgres": true, "mariadbd": true, "mysqld": true}

// readCPU samples CPU times from /proc. The database's processes are found by
// name, so a database on another machine (or in a container whose processes
// are not visible) reads as zero.
func readCPU() cpuTimes {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(samples)
	t := cpuTimes{allocs: samples[0].Value.Uint64(), allocBytes: samples[1].Value.Uint64()}
	if samples[2].Value.Kind() == metrics.KindFloat64 {
		t.gc = time.Duration(samples[2].Value.Float64() * float64(time.Second))
	}
	self, ok := procCPU("/proc/self/stat")
	if !ok {
		return t
	}
	t.self, t.ok = self, true
	t.reads, t.writes = procIO()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || !dbProcessNames[string(bytes.TrimSpace(comm))] {
			continue
		}
		if c, ok := procCPU(filepath.Join(d, "stat")); ok {
			t.db += c
		}
	}
	return t
}

// procIO returns the syscr and syscw counters of /proc/self/io (zero if
// they cannot be read).
func procIO() (reads, writes uint64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, val, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			continue
		}
		switch string(name) {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// procCPU returns utime+stime of one /proc/<pid>/stat file.
func procCPU(path string) (time.Duration, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * time.Second / clockTick, true
}

// plus returns the CPU used in t and in o together; the /proc figures only
// if both have them.
func (t cpuTimes) plus(o cpuTimes) cpuTimes {
	s := cpuTimes{allocs: t.allocs + o.allocs, allocBytes: t.allocBytes + o.allocBytes, gc: t.gc + o.gc}
	if t.ok && o.ok {
		s.self, s.db, s.ok = t.self+o.self, t.db+o.db, true
		s.reads, s.writes = t.reads+o.reads, t.writes+o.writes
	}
	return s
}

// sub returns the CPU used between o and t.
func (t cpuTimes) sub(o cpuTimes) cpuTimes {
	d := cpuTimes{allocs: t.allocs - o.allocs, allocBytes: t.allocBytes - o.allocBytes, gc: t.gc - o.gc}
	if t.ok && o.ok {
		d.self, d.db, d.ok = t.self-o.self, t.db-o.db, true
		d.reads, d.writes = t.reads-o.reads, t.writes-o.writes
	}
	return d
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// dbProcessNames are the comm names of database server processes whose CPU
// counts as the database's: PostgreSQL names every backend "postgres".
var dbProcessNames = map[string]bool{"postgres": true, "mariadbd": true, "mysqld": true}

// costs is what a server process and the database have used so far.
type costs struct {
	cpu           time.Duration // the server process: utime + stime, all its threads
	reads, writes uint64        // its read and write system calls
	stats         processStats  // what it counts of itself
	db            dbCPU
	pooler        time.Duration // PgBouncer's process (--pgbouncer)
}

// roundCosts is what a round used: the difference of two costs.
type roundCosts struct {
	cpu, db       time.Duration
	pooler        time.Duration
	reads, writes uint64
	allocs        uint64
	allocBytes    uint64
	gc            time.Duration
	statements    int64
}

func (c roundCosts) plus(o roundCosts) roundCosts {
	return roundCosts{
		cpu: c.cpu + o.cpu, db: c.db + o.db, pooler: c.pooler + o.pooler, reads: c.reads + o.reads, writes: c.writes + o.writes,
		allocs: c.allocs + o.allocs, allocBytes: c.allocBytes + o.allocBytes, gc: c.gc + o.gc,
		statements: c.statements + o.statements,
	}
}

// since returns what was used between before and c.
func (c costs) since(before costs) roundCosts {
	return roundCosts{
		cpu: c.cpu - before.cpu, db: c.db.since(before.db), pooler: c.pooler - before.pooler,
		reads: c.reads - before.reads, writes: c.writes - before.writes,
		allocs: c.stats.Allocs - before.stats.Allocs, allocBytes: c.stats.AllocBytes - before.stats.AllocBytes,
		gc:         time.Duration((c.stats.GCSeconds - before.stats.GCSeconds) * float64(time.Second)),
		statements: c.stats.Statements - before.stats.Statements,
	}
}

// processCosts reads pid's CPU time and system calls from /proc.
func processCosts(pid int) (costs, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	cpu, ok := procCPU(filepath.Join(dir, "stat"))
	if !ok {
		return costs{}, fmt.Errorf("cannot read the CPU time of process %d from %s/stat (Linux only)", pid, dir)
	}
	c := costs{cpu: cpu}
	c.reads, c.writes = procIO(filepath.Join(dir, "io"))
	return c, nil
}

// dbCPU is the CPU time of each database server process (by pid).
type dbCPU map[int]time.Duration

// readDBCPU reads the CPU time of every process named as a database server.
// The processes are found by name, so a database on another machine (or in
// a container whose processes are not visible) reads as empty, and other
// clients of a local one count too.
func readDBCPU() dbCPU {
	m := dbCPU{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || !dbProcessNames[string(bytes.TrimSpace(comm))] {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if c, ok := procCPU(filepath.Join(d, "stat")); ok {
			m[pid] = c
		}
	}
	return m
}

// since is the CPU the database's processes used since before: each
// process's difference, the whole time of processes started since (a
// PostgreSQL backend for a new connection), nothing for processes that
// ended (their time is gone from /proc; the servers' pools keep their
// connections, so those are other clients'), and never less than zero.
func (m dbCPU) since(before dbCPU) time.Duration {
	var d time.Duration
	for pid, c := range m {
		if b, ok := before[pid]; ok && c >= b {
			d += c - b
		} else if !ok {
			d += c
		}
	}
	return d
}

// procIO returns the syscr and syscw counters of a /proc/<pid>/io file (zero
// if they cannot be read).
func procIO(path string) (reads, writes uint64) {
	b, err := os.ReadFile(path)
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

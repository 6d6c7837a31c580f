package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wrkScript is the Lua script wrk runs (see the file): random seeded cookies,
// every response checked, one result line.
//
//go:embed wrk.lua
var wrkScript []byte

// wrkTimeout is wrk's --timeout: a request slower than that counts as an
// error (a timeout) rather than a latency.
const wrkTimeout = 10 * time.Second

// wrkRun is one wrk invocation.
type wrkRun struct {
	wrk         string // the wrk binary
	script      string // the Lua script's file
	url         string // the server, http://host:port
	workload    string
	cookies     string // file of cookies, "" for none
	threads     int
	connections int
	duration    time.Duration // whole seconds: wrk takes nothing finer
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	requests int           // responses received, good or bad
	duration time.Duration // wrk's own measure of the run
	// socket errors, as wrk counts them
	connect, read, write, timeout int
	status                        int // responses with a status above 399
	bad                           int // responses the script rejected (status included)
	firstBad                      string
	p50, p99                      time.Duration
}

// errors is every failed request: the script's rejects (bad statuses
// included) and wrk's socket errors.
func (r wrkResult) errors() int { return r.bad + r.connect + r.read + r.write + r.timeout }

// firstError describes the errors, or is "".
func (r wrkResult) firstError() string {
	var parts []string
	if r.bad > 0 {
		parts = append(parts, fmt.Sprintf("%d bad responses (%d with status >= 400), first: %s", r.bad, r.status, r.firstBad))
	}
	if n := r.connect + r.read + r.write + r.timeout; n > 0 {
		parts = append(parts, fmt.Sprintf("socket errors: connect %d, read %d, write %d, timeout %d", r.connect, r.read, r.write, r.timeout))
	}
	return strings.Join(parts, "; ")
}

// writeScript writes wrk's Lua script into dir. With a pause, each
// connection waits that long between a response and its next request: wrk
// calls the script's delay function before each request, and only when the
// script defines one (it then sends every request from a timer), so a run
// without a pause gets a script without it.
func writeScript(dir string, pause time.Duration) (string, error) {
	p := filepath.Join(dir, "sessionbench.lua")
	script := wrkScript
	if pause > 0 {
		script = fmt.Appendf(slices.Clip(script), "\nfunction delay()\n  return %d\nend\n", pause.Milliseconds())
	}
	return p, os.WriteFile(p, script, 0o600)
}

// findWrk returns the path of the wrk binary name (a path, or a name looked
// up in PATH).
func findWrk(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("wrk is needed to generate load from a separate process (Debian: apt-get install -y wrk; or --wrk PATH): %w", err)
	}
	return p, nil
}

// run runs wrk and parses its result line.
func (w wrkRun) run(ctx context.Context) (wrkResult, error) {
	if w.duration < time.Second || w.duration%time.Second != 0 {
		return wrkResult{}, fmt.Errorf("wrk runs whole seconds, not %s", w.duration)
	}
	path := pathCounter
	if w.workload == workloadRead {
		path = pathRead
	}
	args := []string{
		"--threads", strconv.Itoa(w.threads), "--connections", strconv.Itoa(w.connections),
		"--duration", strconv.Itoa(int(w.duration/time.Second)) + "s",
		"--timeout", strconv.Itoa(int(wrkTimeout/time.Second)) + "s",
		"--script", w.script, w.url, "--", path, w.workload, w.cookies,
	}
	cmd := exec.CommandContext(ctx, w.wrk, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		return wrkResult{}, ctx.Err()
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	r, err := parseWrk(stdout.String())
	if err != nil {
		return r, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return r, nil
}

// parseWrk reads the lines the script's done function prints.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	found := false
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		if s, ok := strings.CutPrefix(line, "sessionbench-first-bad "); ok {
			r.firstBad = strings.TrimSpace(s)
			continue
		}
		s, ok := strings.CutPrefix(line, "sessionbench-result ")
		if !ok {
			continue
		}
		found = true
		fields := map[string]*int{
			"requests": &r.requests, "connect": &r.connect, "read": &r.read, "write": &r.write,
			"timeout": &r.timeout, "status": &r.status, "bad": &r.bad,
		}
		var dur, p50, p99 int
		fields["duration_us"], fields["p50_us"], fields["p99_us"] = &dur, &p50, &p99
		seen := 0
		for f := range strings.FieldsSeq(s) {
			k, v, _ := strings.Cut(f, "=")
			p, ok := fields[k]
			if !ok {
				return r, fmt.Errorf("unknown field %q in %q", k, line)
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return r, fmt.Errorf("field %q in %q: not a count", k, line)
			}
			*p = n
			seen++
		}
		if seen != len(fields) {
			return r, fmt.Errorf("%d fields in %q, want %d", seen, line, len(fields))
		}
		r.duration = time.Duration(dur) * time.Microsecond
		r.p50, r.p99 = time.Duration(p50)*time.Microsecond, time.Duration(p99)*time.Microsecond
	}
	if !found {
		return r, errors.New("no sessionbench-result line in wrk's output")
	}
	if r.duration <= 0 {
		return r, errors.New("wrk reports a run of no duration")
	}
	return r, nil
}

// sumWrk sums the results of wrk processes run together (one per instance):
// requests and errors are added up; the duration is the longest run's, so
// the summed rate errs low by the few milliseconds the runs' ends differ;
// the percentiles are the highest process's (wrk's histograms are not
// available to merge), and the first bad response the first process's that
// has one.
func sumWrk(rs []wrkResult) wrkResult {
	var s wrkResult
	for _, r := range rs {
		s.requests += r.requests
		s.duration = max(s.duration, r.duration)
		s.connect += r.connect
		s.read += r.read
		s.write += r.write
		s.timeout += r.timeout
		s.status += r.status
		s.bad += r.bad
		if s.firstBad == "" {
			s.firstBad = r.firstBad
		}
		s.p50, s.p99 = max(s.p50, r.p50), max(s.p99, r.p99)
	}
	return s
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestInstructionsScript runs tools/instructions.sh briefly on PostgreSQL:
// it must print instructions per request for each server, more for
// sqlsessions than for the floor (it does more), and fail, naming the
// benchmark, for a server that does not exist instead of printing a count
// of nothing.
func TestInstructionsScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs valgrind; skipped with -short (.ci/run runs it)")
	}
	if _, err := exec.LookPath("valgrind"); err != nil {
		skipOrFail(t, "valgrind is not installed (Debian: apt-get install -y valgrind): %v", err)
	}
	requireDB(t, "postgres")
	run := func(servers string) (string, error) {
		cmd := exec.Command("../../instructions.sh", "postgres", "counter", servers)
		cmd.Env = append(os.Environ(), "LO=20", "HI=120")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return stderr.String(), err
		}
		return string(out), nil
	}

	out, err := run("floor,sqlsessions")
	if err != nil {
		t.Fatalf("instructions.sh: %v\n%s", err, out)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, n, ok := strings.Cut(line, " ")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("line %q: want a server and a count", line)
		}
		got[name] = v
	}
	floor, ours := got["floor"], got["sqlsessions"]
	if len(got) != 2 || floor < 10_000 || ours > 10_000_000 || ours <= floor {
		t.Fatalf("instructions per request %v: want floor and sqlsessions, each between 10k and 10M, sqlsessions above the floor", got)
	}

	out, err = run("nosuchserver")
	if err == nil || !strings.Contains(out, "Handler/postgres/counter/nosuchserver with 20 requests did not run") {
		t.Fatalf("unknown server: err %v, output %q; want a failure naming the benchmark", err, out)
	}
}

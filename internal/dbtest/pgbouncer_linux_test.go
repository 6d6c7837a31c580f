package dbtest

import (
	"bufio"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPgBouncerDiesWithTest: a test process killed before its cleanups run
// takes its PgBouncer with it (the kernel's parent-death signal), so no
// pooler outlives a panicking or timed-out test.
func TestPgBouncerDiesWithTest(t *testing.T) {
	if os.Getenv("DBTEST_PGBOUNCER_CHILD") != "" {
		u, err := url.Parse(PgBouncerURL(t, PostgresURL()))
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("PGBOUNCER " + u.Host + "\n")
		time.Sleep(time.Minute) // until the parent kills this process
		return
	}
	pgBouncerBin(t)
	// The child's temporary files go in ours, since it never cleans up;
	// PgBouncer's user must get through to its configuration.
	tmp := t.TempDir()
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPgBouncerDiesWithTest$", "-test.v")
	cmd.Env = append(os.Environ(), "DBTEST_PGBOUNCER_CHILD=1", "TMPDIR="+tmp)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "PGBOUNCER "); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("the child test did not start PgBouncer within 30 s")
	}
	if a == "" {
		t.Skip("the child test did not start PgBouncer (PostgreSQL unreachable?)")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return // gone
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("PgBouncer still accepts connections on %s 5 s after its test process was killed", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package sqlitewasm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goBuild builds ./internal/smoke (a program that opens a database with
// sqlitewasm, upserts and reads back) into dir and returns the binary path.
func goBuild(t *testing.T, dir string, env []string, tags string) string {
	t.Helper()
	if runtime.GOOS == "wasip1" || runtime.GOOS == "js" {
		t.Skipf("cannot run the go command on %s", runtime.GOOS)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	out := filepath.Join(dir, "smoke")
	args := []string{"build", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command(goBin, append(args, "./internal/smoke")...)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v with %v: %v\n%s", args, env, err, b)
	}
	return out
}

func runSmoke(t *testing.T, cmd *exec.Cmd, want string) {
	t.Helper()
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
	}
	if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, want) {
		t.Errorf("%v printed %q, want prefix %q", cmd.Args, got, want)
	}
}

// TestBuildWithoutCgo builds a program using sqlitewasm with CGO_ENABLED=0
// and runs it against an in-memory and a file database.
func TestBuildWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := goBuild(t, dir, []string{"CGO_ENABLED=0"}, "")
	runSmoke(t, exec.Command(bin, "sqlite::memory:"), "ok v=3 journal=memory")
	runSmoke(t, exec.Command(bin, "sqlite://"+filepath.ToSlash(filepath.Join(dir, "s.db"))), "ok v=3 journal=wal")
}

// TestCrossBuilds builds the smoke program for GOOS=wasip1 and GOOS=js, with
// and without the sqlite3_dotlk tag, and runs it under Node.js when
// available (js through Go's go_js_wasm_exec, wasip1 through Node's WASI).
// Without sqlite3_dotlk those builds have no file locking, so a file
// database falls back to the rollback journal; with it, WAL works.
func TestCrossBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles SQLite several times; skipped with -short")
	}
	if runtime.GOOS == "wasip1" || runtime.GOOS == "js" {
		t.Skipf("cannot run the go command on %s", runtime.GOOS)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	b, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	jsExec := filepath.Join(strings.TrimSpace(string(b)), "lib", "wasm", "go_js_wasm_exec")
	node, nodeErr := exec.LookPath("node")
	wasiRunner, err := filepath.Abs(filepath.Join("testdata", "wasip1_run.mjs"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		goos, tags, journal string
	}{
		{"wasip1", "", "delete"},
		{"wasip1", "sqlite3_dotlk", "wal"},
		{"js", "", "delete"},
		{"js", "sqlite3_dotlk", "wal"},
	} {
		t.Run(tt.goos+"/"+tt.tags, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			bin := goBuild(t, dir, []string{"GOOS=" + tt.goos, "GOARCH=wasm", "CGO_ENABLED=0"}, tt.tags)
			if nodeErr != nil {
				t.Skipf("built; not run: node not found (%v)", nodeErr)
			}
			run := func(dsn string) *exec.Cmd {
				if tt.goos == "js" {
					return exec.Command(jsExec, bin, dsn)
				}
				// The WASI sandbox sees dir as "/".
				dsn = strings.ReplaceAll(dsn, filepath.ToSlash(dir), "")
				return exec.Command(node, "--no-warnings", wasiRunner, bin, dir, dsn)
			}
			runSmoke(t, run("sqlite::memory:"), "ok v=3 journal=memory")
			runSmoke(t, run("sqlite://"+filepath.ToSlash(filepath.Join(dir, "s.db"))), "ok v=3 journal="+tt.journal)
			if _, err := os.Stat(filepath.Join(dir, "s.db")); err != nil {
				t.Errorf("the file database was not written to the host: %v", err)
			}
		})
	}
}

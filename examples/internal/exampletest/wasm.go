package exampletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildWasm builds the main package in the current directory for
// GOOS=wasip1 GOARCH=wasm and returns the module's path. Build tags can be
// added with SQLSESSIONS_WASM_TAGS (e.g. "sqlite3_dotlk").
func BuildWasm(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(wd)+".wasm")
	cmd := exec.Command(goTool(t), "build", "-tags", os.Getenv("SQLSESSIONS_WASM_TAGS"), "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for wasip1: %v\n%s", err, b)
	}
	return out
}

// Wazero builds the wazero command at the version pinned in tools/go.mod
// (the workspace resolves it) and returns its path.
func Wazero(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "wazero")
	cmd := exec.Command(goTool(t), "build", "-o", out, "github.com/tetratelabs/wazero/cmd/wazero")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building wazero: %v\n%s", err, b)
	}
	return out
}

// WazeroCacheDir is where wazero keeps compiled modules across test runs:
// compiling a module this size takes a minute or more on a small machine,
// loading it from the cache about a second.
func WazeroCacheDir(t testing.TB) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "sqlsessions", "wazero")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func goTool(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	return goBin
}

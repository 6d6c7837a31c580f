package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/examples/internal/exampletest"
)

// wasmStartTimeout covers the first start, when wazero compiles the module
// (over a minute on a busy 2-core machine); later starts load it from the
// cache.
const wasmStartTimeout = 5 * time.Minute

// freeAddr returns a loopback address with a port nobody listens on: wazero
// needs the port up front, so ADDR=127.0.0.1:0 cannot work here.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// wasmCmd runs module under wazero, listening on addr (the runtime opens the
// socket), with dir mounted at /data for the SQLite file.
func wasmCmd(wazero, module, addr, dir string) *exec.Cmd {
	cmd := exec.Command(wazero, "run",
		"-cachedir", os.Getenv("SQLSESSIONS_WAZERO_CACHE"),
		"-listen", addr,
		"-mount", dir+":/data",
		"-env", "DATABASE_URL=sqlite:///data/sessions.db"+os.Getenv("SQLSESSIONS_WASM_DSN_QUERY"),
		"-env", "ADDR="+addr,
		module)
	cmd.Env = os.Environ()
	return cmd
}

// stopWasm sends sig to the wazero process, as Ctrl-C (SIGINT) or a
// service manager (SIGTERM) would, and checks what README says happens: a
// wasip1 module receives no signals, so wazero ends at once, killed by the
// signal, with no graceful shutdown of the module.
func stopWasm(t *testing.T, p *exampletest.Proc, sig syscall.Signal) {
	t.Helper()
	took, err := p.Signal(t, sig, 20*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("after %v: exit %v, want wazero ended by the signal", sig, err)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != sig {
		t.Errorf("after %v: exit %v, want wazero ended by the signal", sig, err)
	}
	if took > exampletest.StopBound {
		t.Errorf("wazero took %s to end after %v, want < %s", took.Round(time.Millisecond), sig, exampletest.StopBound)
	}
	exampletest.CheckNoPanic(t, p.Stderr())
}

// TestWasmServerSurvivesRestart builds this example for GOOS=wasip1, runs it
// under wazero with its sessions in a file of a mounted directory, drives
// the counter, stops wazero with SIGINT (Ctrl-C), starts it again and checks
// that the session counts on: the restart, with -cachedir, must beat the
// session's 10 s of inactivity.
func TestWasmServerSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a WebAssembly module and runs it under wazero; skipped with -short")
	}
	module := exampletest.BuildWasm(t)
	wazero := exampletest.Wazero(t)
	t.Setenv("SQLSESSIONS_WAZERO_CACHE", exampletest.WazeroCacheDir(t))
	dir := t.TempDir()
	addr := freeAddr(t)

	p := exampletest.StartCmd(t, wasmCmd(wazero, module, addr, dir), wasmStartTimeout)
	if p.URL != "http://"+addr {
		t.Fatalf("listening on %s, want http://%s", p.URL, addr)
	}
	first := exampletest.Get(t, p.URL+"/", "")
	if first.Body != "Current count: 0" || first.Cookie == nil {
		t.Fatalf("first visit: %q, cookie %v", first.Body, first.Cookie)
	}
	token := first.Cookie.Value
	if v := exampletest.Get(t, p.URL+"/", token); v.Body != "Current count: 1" {
		t.Fatalf("second visit: %q", v.Body)
	}
	if v := exampletest.Get(t, p.URL+"/", exampletest.RandomToken()); v.Body != "Current count: 0" || v.Cookie == nil || v.Cookie.Value == token {
		t.Fatalf("bogus cookie: %q, cookie %v", v.Body, v.Cookie)
	}
	stopWasm(t, p, syscall.SIGINT)
	if _, err := os.Stat(filepath.Join(dir, "sessions.db")); err != nil {
		t.Fatalf("no database file in the mounted directory: %v", err)
	}

	started := time.Now()
	p = exampletest.StartCmd(t, wasmCmd(wazero, module, addr, dir), wasmStartTimeout)
	t.Logf("restart (module cached) took %s", time.Since(started).Round(time.Millisecond))
	if v := exampletest.Get(t, p.URL+"/", token); v.Body != "Current count: 2" {
		t.Fatalf("after a restart: %q, want the session to go on at 2", v.Body)
	}
	stopWasm(t, p, syscall.SIGTERM)
}

// BenchmarkWasmVsNative runs the counter workload (one session per client,
// read and increment on every request) against this example built natively
// and built for wasip1 under wazero, in one run. It reports requests per
// second, the module's size and its cached start-up time.
//
//	go test -run '^$' -bench WasmVsNative -benchtime 5s ./sqlite
//
// SQLSESSIONS_WASM_DSN_QUERY appends a query to the wasm server's
// DATABASE_URL, to compare settings (e.g. "?_pragma=synchronous(off)").
func BenchmarkWasmVsNative(b *testing.B) {
	module := exampletest.BuildWasm(b)
	native := exampletest.Build(b)
	wazero := exampletest.Wazero(b)
	b.Setenv("SQLSESSIONS_WAZERO_CACHE", exampletest.WazeroCacheDir(b))

	var wasmStartup time.Duration
	fi, err := os.Stat(module)
	if err != nil {
		b.Fatal(err)
	}
	servers := []struct {
		name  string
		start func(b *testing.B) *exampletest.Proc
	}{
		{"native", func(b *testing.B) *exampletest.Proc {
			dsn := "DATABASE_URL=sqlite://" + filepath.ToSlash(filepath.Join(b.TempDir(), "sessions.db"))
			return exampletest.Start(b, native, dsn)
		}},
		{"wasm", func(b *testing.B) *exampletest.Proc {
			addr := freeAddr(b)
			exampletest.StartCmd(b, wasmCmd(wazero, module, addr, b.TempDir()), wasmStartTimeout).Kill() // compile into the cache
			started := time.Now()
			p := exampletest.StartCmd(b, wasmCmd(wazero, module, addr, b.TempDir()), wasmStartTimeout)
			wasmStartup = time.Since(started)
			return p
		}},
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			p := s.start(b)
			defer p.Kill()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
			var failures atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var cookie *http.Cookie
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
					if cookie != nil {
						req.AddCookie(cookie)
					}
					res, err := client.Do(req)
					if err != nil {
						failures.Add(1)
						continue
					}
					buf := make([]byte, 64)
					n, _ := res.Body.Read(buf)
					res.Body.Close()
					if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(buf[:n]), "Current count: ") {
						failures.Add(1)
					}
					for _, c := range res.Cookies() {
						if c.Name == exampletest.CookieName {
							cookie = c
						}
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			if s.name == "wasm" {
				b.ReportMetric(float64(wasmStartup.Milliseconds()), "startup-ms")
				b.ReportMetric(float64(fi.Size())/(1<<20), "module-MiB")
			}
			if n := failures.Load(); n > 0 {
				b.Fatalf("%d failed requests", n)
			}
		})
	}
}

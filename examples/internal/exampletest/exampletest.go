// Package exampletest runs the example servers as real processes in tests:
// it builds an example's binary, starts it on a free port, drives it over
// HTTP the way a browser would, and stops it with a signal. It also finds
// the test database servers.
//
// Servers are found through environment variables:
//
//	SQLSESSIONS_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	SQLSESSIONS_MYSQL_URL     default root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC
//
// (SQLSESSIONS_MYSQL_URL may also be a mysql:// URL; internal/dburl reads
// both, for every module's tests.) A server
// that cannot be reached skips the test, except when the environment
// variable CI is non-empty: then the test fails.
package exampletest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
)

// Build builds the main package in the current directory (the example's
// own directory, where its tests run) into a temporary directory, with env
// added to the environment (e.g. "CGO_ENABLED=0"), and returns the binary.
func Build(t testing.TB, env ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(wd))
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (%v): %v\n%s", env, err, out)
	}
	return bin
}

// childEnv is the test's environment without the variables the examples
// read, plus env.
func childEnv(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "ADDR=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, env...)
}

// Proc is a running example server.
type Proc struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:41234".
	URL string

	cmd    *exec.Cmd
	stdout syncbuf.Buffer
	stderr syncbuf.Buffer
	done   chan struct{}
	err    error // set before done is closed
}

// StartupTimeout bounds how long Start waits for the "listening on" line
// (the examples connect to their database and migrate first).
const StartupTimeout = 60 * time.Second

// Start runs bin with env added (ADDR=127.0.0.1:0 unless env sets ADDR) and
// waits until it prints "listening on http://HOST:PORT". The process is
// killed at cleanup if the test has not stopped it.
func Start(t testing.TB, bin string, env ...string) *Proc {
	t.Helper()
	hasAddr := false
	for _, kv := range env {
		hasAddr = hasAddr || strings.HasPrefix(kv, "ADDR=")
	}
	if !hasAddr {
		env = append(env, "ADDR=127.0.0.1:0")
	}
	cmd := exec.Command(bin)
	cmd.Env = childEnv(env)
	return StartCmd(t, cmd, StartupTimeout)
}

// StartCmd starts cmd (its environment as set) and waits up to timeout
// until it prints "listening on http://HOST:PORT". The process is killed at
// cleanup if the test has not stopped it.
func StartCmd(t testing.TB, cmd *exec.Cmd, timeout time.Duration) *Proc {
	t.Helper()
	name := filepath.Base(cmd.Path)
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&p.stdout, line)
			if u, ok := strings.CutPrefix(line, "listening on "); ok {
				select {
				case listening <- u:
				default:
				}
			}
		}
		_, _ = io.Copy(&p.stdout, out)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)

	select {
	case p.URL = <-listening:
		return p
	case <-p.done:
		t.Fatalf("%s exited before listening (%v)\nstdout: %s\nstderr: %s", name, p.err, p.stdout.String(), p.stderr.String())
	case <-time.After(timeout):
		t.Fatalf("%s did not print \"listening on\" within %s\nstdout: %s\nstderr: %s", name, timeout, p.stdout.String(), p.stderr.String())
	}
	return nil
}

func (p *Proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill stops the process at once, as a crash or an OOM kill would: no
// graceful shutdown.
func (p *Proc) Kill() { p.kill() }

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// StopBound is how soon an example must exit after Stop's signal: no
// request is in flight then, so nothing should hold the shutdown up.
const StopBound = time.Second

// Stop sends sig and waits up to 20 s for the process to exit. It fails the
// test unless the exit status is 0, the exit came within StopBound and
// stderr shows no panic. Before the signal it opens the connections a
// browser leaves behind, which must not delay the exit: one that has sent
// nothing (a pre-connection) and one with half a request.
func (p *Proc) Stop(t testing.TB, sig os.Signal) {
	t.Helper()
	for _, prefix := range []string{"", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"} {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "http://"), 5*time.Second)
		if err != nil {
			t.Fatalf("connecting before %v: %v", sig, err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, prefix); err != nil {
			t.Fatal(err)
		}
	}
	// The server accepts in order: once a later connection is answered,
	// the two above are in its hands.
	if _, err := get(p.URL+"/", ""); err != nil {
		t.Fatalf("request before %v: %v", sig, err)
	}
	took, err := p.Signal(t, sig, 20*time.Second)
	t.Logf("exited %s after %v", took.Round(time.Millisecond), sig)
	if took > StopBound {
		t.Errorf("want an exit within %s after %v, even with connections waiting for a request", StopBound, sig)
	}
	if err != nil {
		t.Errorf("after %v: exit %v, want status 0\nstderr: %s", sig, err, p.stderr.String())
	}
	CheckNoPanic(t, p.stderr.String())
}

// Signal sends sig and waits up to timeout for the process to exit. It
// returns how long the exit took and the process's exit error (nil for
// status 0; an *exec.ExitError otherwise, also when a signal ended it).
func (p *Proc) Signal(t testing.TB, sig os.Signal, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
	signaled := time.Now()
	select {
	case <-p.done:
		return time.Since(signaled), p.err
	case <-time.After(timeout):
		t.Fatalf("still running %s after %v\nstderr: %s", timeout, sig, p.stderr.String())
		return 0, nil
	}
}

// CheckNoPanic fails the test if stderr holds a panic or a goroutine trace.
func CheckNoPanic(t testing.TB, stderr string) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "fatal error:"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr shows %q:\n%s", bad, stderr)
		}
	}
}

// Fail runs bin with env added (and ADDR=127.0.0.1:0) and expects it to
// exit on its own with a non-zero status and a single line on stderr that
// contains every string in want. It returns that line.
func Fail(t testing.TB, bin string, env []string, want ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = childEnv(append([]string{"ADDR=127.0.0.1:0"}, env...))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%v: still running after 60 s, want a quick failure\nstdout: %s\nstderr: %s", env, stdout.String(), stderr.String())
	case !errors.As(err, &exit):
		t.Fatalf("%v: exit %v, want a non-zero exit status\nstdout: %s\nstderr: %s", env, err, stdout.String(), stderr.String())
	case exit.ExitCode() <= 0:
		t.Fatalf("%v: exit %v, want a non-zero exit status (not a signal)", env, err)
	}
	msg := stderr.String()
	CheckNoPanic(t, msg)
	line := strings.TrimSuffix(msg, "\n")
	if line == "" || strings.Contains(line, "\n") {
		t.Errorf("%v: stderr is %q, want exactly one line", env, msg)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%v: stderr %q does not mention %q", env, line, w)
		}
	}
	return line
}

// SIGTERM is syscall.SIGTERM as an os.Signal.
var SIGTERM os.Signal = syscall.SIGTERM

// Secret is the password the failure cases put in database URLs: no error
// line may show it.
const Secret = "s3cret"

// FailCase is one wrong way to start an example: the environment it adds and
// the strings its one-line error must contain.
type FailCase struct {
	Name string
	Env  []string
	Want []string
}

// Failures runs every case against bin in parallel subtests (see Fail) and
// fails any whose error line shows Secret.
func Failures(t *testing.T, bin string, cases []FailCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if line := Fail(t, bin, c.Env, c.Want...); strings.Contains(line, Secret) {
				t.Errorf("the error shows the password: %s", line)
			}
		})
	}
}

// RunCounter starts bin with env, drives the counter (Counter, then Expiry
// unless -short) and stops it with SIGTERM, which must exit 0.
func RunCounter(t *testing.T, bin string, env ...string) {
	t.Helper()
	p := Start(t, bin, env...)
	token := Counter(t, p.URL)
	if !testing.Short() {
		Expiry(t, p.URL, token, 3)
	}
	p.Stop(t, SIGTERM)
}

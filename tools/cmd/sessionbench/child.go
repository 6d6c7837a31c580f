package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
)

// childStartTimeout bounds how long a child may take to open its pool and
// listen (SQLite compiles its WebAssembly build at the first open).
const childStartTimeout = 2 * time.Minute

// child is a server running in a process of its own.
type child struct {
	name  string // backend/server, for messages
	cmd   *exec.Cmd
	pid   int
	url   string // http://127.0.0.1:port
	stdin io.WriteCloser
	// stderr keeps what the child wrote there, for errors and warnings.
	stderr *syncbuf.Buffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // of Wait, once done
}

// startChild starts exe (this program) serving cfg and waits until it
// listens.
func startChild(ctx context.Context, exe string, cfg serverConfig, cpuProfile string) (*child, error) {
	c := &child{name: cfg.backend + "/" + cfg.server, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(exe, serveArgs(cfg, cpuProfile)...)
	c.cmd.Stderr = c.stderr
	if cfg.poolURL != "" {
		c.cmd.Env = append(os.Environ(), poolURLEnv+"="+cfg.poolURL)
	}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting the server process: %w", c.name, err)
	}
	c.pid = c.cmd.Process.Pid
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				ready <- addr
			}
		}
		// Nothing more is read: the child writes one line. Wait after
		// stdout is drained, as exec asks.
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	timer := time.NewTimer(childStartTimeout)
	defer timer.Stop()
	select {
	case addr := <-ready:
		c.url = "http://" + addr
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s: the server process ended before listening (%v)%s", c.name, c.err, c.stderrNote())
	case <-timer.C:
		err = fmt.Errorf("%s: the server process did not listen within %s", c.name, childStartTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	return nil, errors.Join(err, c.stop())
}

// stop closes the child's standard input, which makes it shut down, and
// waits for it to end (killing it after 15 s). A child that ended with an
// error is an error; what it wrote on its standard error is in warnings.
func (c *child) stop() error {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s: the server process did not stop within 15 s; killed%s", c.name, c.stderrNote())
	}
	if c.err != nil {
		return fmt.Errorf("%s: the server process ended with %v%s", c.name, c.err, c.stderrNote())
	}
	return nil
}

// warnings is what the child wrote on its standard error, if anything (the
// HTTP server's and the libraries' logs).
func (c *child) warnings() string { return strings.TrimSpace(c.stderr.String()) }

func (c *child) stderrNote() string {
	s := strings.TrimSpace(c.stderr.String())
	if s == "" {
		return ""
	}
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return "; its standard error:\n" + s
}

// stats reads the child's own counters.
func (c *child) stats(ctx context.Context, client *http.Client) (processStats, error) {
	var s processStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+statsPath, nil)
	if err != nil {
		return s, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return s, fmt.Errorf("%s: stats: %w", c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s: stats: status %d", c.name, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("%s: stats: %w", c.name, err)
	}
	return s, nil
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clock is a settable time source for the progress printer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestProgress(terminal, json bool) (*progress, *bytes.Buffer, *clock) {
	var buf bytes.Buffer
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newProgress(&buf, terminal, json)
	p.now, p.start, p.last = c.now, c.t, c.t
	return p, &buf, c
}

func TestProgressTerminal(t *testing.T) {
	p, buf, c := newTestProgress(true, false)
	c.t = c.t.Add(50 * time.Millisecond)
	p.update(1000) // too soon after the start: not drawn
	if buf.Len() != 0 {
		t.Fatalf("drawn before a tick: %q", buf)
	}
	c.t = c.t.Add(450 * time.Millisecond)
	p.update(2000)
	c.t = c.t.Add(500 * time.Millisecond)
	p.update(4000)
	if err := p.finish(4500); err != nil {
		t.Fatal(err)
	}
	want := "\r\x1b[Kpurging: 2000 expired sessions deleted (4000/s)" +
		"\r\x1b[Kpurging: 4000 expired sessions deleted (4000/s)" +
		"\r\x1b[Kpurged 4500 expired sessions in 1s (4500/s)\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestProgressPlain(t *testing.T) {
	p, buf, c := newTestProgress(false, false)
	for i := 1; i <= 25; i++ { // a batch every 100ms for 2.5s
		c.t = c.t.Add(100 * time.Millisecond)
		p.update(int64(i) * 100)
	}
	if err := p.finish(2500); err != nil {
		t.Fatal(err)
	}
	want := "purging: 1000 expired sessions deleted (1000/s)\n" +
		"purging: 2000 expired sessions deleted (1000/s)\n" +
		"purged 2500 expired sessions in 2.5s (1000/s)\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestProgressJSON(t *testing.T) {
	p, buf, c := newTestProgress(false, true)
	c.t = c.t.Add(2 * time.Second)
	p.update(10)
	if err := p.finish(10); err != nil {
		t.Fatal(err)
	}
	var out purgeOutput
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil || out.Deleted != 10 || out.Seconds != 2 || out.Rate != 5 {
		t.Errorf("got %q (%v)", buf, err)
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer counts as a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		if !isTerminal(tty) {
			t.Error("/dev/tty does not count as a terminal")
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// purgeOutput is purge's JSON output.
type purgeOutput struct {
	Deleted int64   `json:"deleted"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate_per_second"`
}

func purge(ctx context.Context, e *env, _ []string) error {
	// One "now" for the whole purge: sessions that expire while it runs
	// are left for the next one, so it always ends.
	now := e.now()
	p := newProgress(e.stdout, isTerminal(e.stdout) && !e.o.json, e.o.json)
	var total int64
	for {
		n, err := e.store.DeleteExpired(ctx, now, e.o.batch)
		total += n
		if err != nil {
			p.clear()
			if ctx.Err() != nil {
				return fmt.Errorf("purge: interrupted after deleting %d expired sessions: %w", total, ctx.Err())
			}
			return e.dbError(fmt.Sprintf("purge: failed after deleting %d expired sessions", total), err)
		}
		p.update(total)
		if n < int64(e.o.batch) {
			break
		}
		if err := ctx.Err(); err != nil {
			p.clear()
			return fmt.Errorf("purge: interrupted after deleting %d expired sessions: %w", total, err)
		}
	}
	return p.finish(total)
}

// progress reports how a purge goes: on a terminal, one line rewritten in
// place at most every tick; otherwise a plain line at most every plainTick;
// in JSON mode, only the final result.
type progress struct {
	w         io.Writer
	terminal  bool
	json      bool
	start     time.Time
	last      time.Time
	now       func() time.Time
	tick      time.Duration
	plainTick time.Duration
	drawn     bool
}

func newProgress(w io.Writer, terminal, json bool) *progress {
	t := time.Now()
	return &progress{w: w, terminal: terminal, json: json, start: t, last: t, now: time.Now,
		tick: 100 * time.Millisecond, plainTick: time.Second}
}

func (p *progress) rate(total int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(total) / elapsed.Seconds()
}

func (p *progress) update(total int64) {
	if p.json {
		return
	}
	t := p.now()
	every := p.plainTick
	if p.terminal {
		every = p.tick
	}
	if t.Sub(p.last) < every {
		return
	}
	p.last = t
	msg := fmt.Sprintf("purging: %d expired sessions deleted (%.0f/s)", total, p.rate(total, t.Sub(p.start)))
	if p.terminal {
		fmt.Fprintf(p.w, "\r\x1b[K%s", msg)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, msg)
}

// clear ends a live line so that what follows starts on a fresh line.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progress) finish(total int64) error {
	elapsed := p.now().Sub(p.start)
	out := purgeOutput{Deleted: total, Seconds: elapsed.Seconds(), Rate: p.rate(total, elapsed)}
	if p.json {
		return printJSON(p.w, out)
	}
	p.clear()
	_, err := fmt.Fprintf(p.w, "purged %d expired sessions in %s (%.0f/s)\n", total, elapsed.Round(time.Millisecond), out.Rate)
	return err
}

// Package reliability holds sqlsessions' reliability and security suite: a
// loopback TCP fault proxy that sits between a store and its database, the
// soak workload that the tests and the sessionsoak command share, and the
// tests themselves (faults, deadlines, soak, bad input, security).
package reliability

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a loopback TCP proxy that forwards connections to a target
// address and can inject faults: Cut (close every connection and refuse new
// ones), Stall (accept and keep connections but forward nothing), latency on
// every forwarded chunk, and Restore. It is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	mode    mode
	latency time.Duration
	resume  chan struct{} // closed when a stall ends
	links   map[*link]struct{}
	closed  bool
	wg      sync.WaitGroup
	accepts int64
}

type mode uint8

const (
	modeUp mode = iota
	modeCut
	modeStall
)

func (m mode) String() string {
	switch m {
	case modeCut:
		return "cut"
	case modeStall:
		return "stall"
	}
	return "up"
}

// link is one proxied connection: the client side and the upstream side.
type link struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		if tc, ok := l.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, as a dead server or network would
		}
		_ = l.client.Close()
		if l.upstream != nil {
			_ = l.upstream.Close()
		}
	})
}

// NewProxy listens on 127.0.0.1 (a free port) and forwards every connection
// to target (host:port). Close it when done.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reliability: proxy listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, links: map[*link]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (127.0.0.1:port): point the client here.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Accepted reports how many connections the proxy has accepted.
func (p *Proxy) Accepted() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// Open reports how many proxied connections are open.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Mode reports the proxy's state: "up", "cut" or "stall".
func (p *Proxy) Mode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode.String()
}

// Cut closes every open connection (with a TCP reset) and makes the proxy
// refuse new ones (accepted, then reset at once) until Restore: what a
// client sees when the database server dies or the network drops.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.setMode(modeCut)
	links := p.takeLinks()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Stall keeps every connection open, and accepts new ones, but forwards no
// byte in either direction until Restore or Cut: what a client sees when the
// server hangs or packets are silently dropped.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.setMode(modeStall)
	p.mu.Unlock()
}

// SetLatency delays every forwarded chunk, in both directions, by d (0: no
// delay). It applies together with the mode.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Restore ends a Cut or a Stall: stalled connections resume where they
// stopped, and new connections are forwarded again. Latency is kept.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.setMode(modeUp)
	p.mu.Unlock()
}

// CloseConns closes every open connection (with a reset) without changing
// the mode: a one-off network blip.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	links := p.takeLinks()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Close stops the proxy: it closes the listener and every connection and
// waits for its goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.setMode(modeCut)
	links := p.takeLinks()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

// setMode must be called with p.mu held.
func (p *Proxy) setMode(m mode) {
	if m == modeStall && p.mode != modeStall {
		p.resume = make(chan struct{})
	}
	if m != modeStall && p.mode == modeStall {
		close(p.resume)
	}
	p.mode = m
}

// takeLinks must be called with p.mu held.
func (p *Proxy) takeLinks() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	clear(p.links)
	return links
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		p.accepts++
		if p.mode == modeCut || p.closed {
			p.mu.Unlock()
			l.close()
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	l.close()
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.forget(l)
	// A stalled proxy does not even reach the server until it resumes.
	if !p.gate(l) {
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	_, alive := p.links[l]
	if alive {
		l.upstream = up
	}
	p.mu.Unlock()
	if !alive {
		_ = up.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(l, up, l.client) }()
	go func() { defer wg.Done(); p.pipe(l, l.client, up) }()
	wg.Wait()
}

// gate waits while the proxy is stalled; it reports false if the link was
// closed meanwhile. It then applies the latency.
func (p *Proxy) gate(l *link) bool {
	for {
		p.mu.Lock()
		m, resume, lat := p.mode, p.resume, p.latency
		p.mu.Unlock()
		if m == modeCut {
			return false
		}
		if m != modeStall {
			if lat > 0 {
				t := time.NewTimer(lat)
				select {
				case <-t.C:
				case <-l.done:
					t.Stop()
					return false
				}
			}
			return true
		}
		select {
		case <-resume:
		case <-l.done:
			return false
		}
	}
}

// pipe copies src to dst chunk by chunk, each chunk passing the gate.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: close both sides
		}
	}
}

package pgnotify_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
)

// feedBound is how soon, with the listener, a log-out on one instance must
// be refused by another. Measured: a few milliseconds (see the test log).
const feedBound = 200 * time.Millisecond

// ttlBound is how soon without it: the default TTL (one second), plus room
// for a slow machine.
const ttlBound = core.DefaultCacheTTL + 500*time.Millisecond

// pair is two application instances on one database: local (B) in this
// process, remote (A) in a child process.
type pair struct {
	d             *testDB
	local, remote *instance
	remoteApp     string // application_name of the remote listener's connection
	proxy         *proxy // between the remote listener and the database
	users         int
}

// newPair starts the two instances: with listen, each with a listener,
// whose feed is of deletions only with deletesOnly.
func newPair(t *testing.T, listen, deletesOnly bool) *pair {
	t.Helper()
	d := newTestDB(t)
	p := &pair{d: d}
	cfg := instanceConfig{dsn: d.url, schema: d.schema, deletesOnly: deletesOnly}
	if listen {
		cfg.listenDSN = d.url
	}
	p.local, _ = startLocal(t, cfg)
	if listen {
		p.proxy = newProxy(t, d.url)
		cfg.listenDSN, p.remoteApp = withAppName(t, p.proxy.dsn)
	}
	p.remote = startProcess(t, cfg)
	if listen {
		for _, in := range []*instance{p.local, p.remote} {
			waitFor(t, 30*time.Second, in.name+"'s listener to listen", func() bool {
				body, _ := in.must(t, "GET", "/feed", "")
				return body == "up"
			})
		}
	}
	return p
}

// logoutCase ends the session cookie of user on the local instance and
// returns the cookie the remote instance must now refuse.
type logoutCase struct {
	name string
	end  func(t *testing.T, p *pair, cookie, user string) (refused string)
}

var logoutCases = []logoutCase{
	{"flush", func(t *testing.T, p *pair, c, user string) string {
		if _, set := p.local.must(t, "POST", "/logout", c); set != "-" {
			t.Fatalf("log-out answered cookie %q, want a removal", set)
		}
		return c
	}},
	{"cycle", func(t *testing.T, p *pair, c, user string) string {
		_, set := p.local.must(t, "POST", "/cycle", c)
		if set == "" || set == "-" || set == c {
			t.Fatalf("CycleID answered cookie %q", set)
		}
		if u, _ := p.remote.must(t, "GET", "/whoami", set); u != user {
			t.Fatalf("the new cookie reads user %q on the other instance", u)
		}
		return c
	}},
	{"revoke", func(t *testing.T, p *pair, c, user string) string {
		if n, _ := p.local.must(t, "POST", "/revoke?user="+user, ""); n != "1" {
			t.Fatalf("revoke deleted %s sessions, want 1", n)
		}
		return c
	}},
	{"operator-revoke", func(t *testing.T, p *pair, c, user string) string {
		// As sessionctl revoke does: a plain delete by a third process,
		// with no cache of its own.
		tok, err := core.ParseToken(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.d.store.Delete(context.Background(), tok.ID()); err != nil {
			t.Fatal(err)
		}
		return c
	}},
}

// refusal logs a new user in on the local instance, reads the session on
// the remote one (which caches it), ends it with lc, and returns how long
// the remote instance went on serving it, and whether it served it at least
// once after the end.
func (p *pair) refusal(t *testing.T, lc logoutCase) (took time.Duration, stale bool) {
	t.Helper()
	p.users++
	user := fmt.Sprintf("user%d", p.users)
	_, c := p.local.must(t, "POST", "/login?user="+user, "")
	if u, _ := p.remote.must(t, "GET", "/whoami", c); u != user {
		t.Fatalf("the remote instance reads user %q, want %q", u, user)
	}
	refused := lc.end(t, p, c, user)
	start := time.Now()
	for {
		u, _ := p.remote.must(t, "GET", "/whoami", refused)
		if u == "" {
			return time.Since(start), stale
		}
		stale = true
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: the remote instance still serves the session after 10 s", lc.name)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTwoProcessesLogout: a log-out, CycleID or revocation on one instance
// is refused by the other within the bound: milliseconds with the listener,
// also with its feed of deletions only, the TTL without.
func TestTwoProcessesLogout(t *testing.T) {
	for _, c := range []struct {
		name            string
		listen, deletes bool
		bound           time.Duration
	}{
		{"listener", true, false, feedBound},
		{"deletes-only", true, true, feedBound},
		{"ttl", false, false, ttlBound},
	} {
		listen, bound := c.listen, c.bound
		t.Run(c.name, func(t *testing.T) {
			if !listen && testing.Short() {
				t.Skip("the TTL bound (1 s waits) runs without -short; core's CachingStore tests cover the TTL")
			}
			p := newPair(t, listen, c.deletes)
			staleSeen := false
			for _, lc := range logoutCases {
				took, stale := p.refusal(t, lc)
				staleSeen = staleSeen || stale
				t.Logf("%s: refused by the other process after %v (served it after the end: %v)", lc.name, took.Round(10*time.Microsecond), stale)
				if took > bound {
					t.Errorf("%s: the other process served the ended session for %v, want < %v", lc.name, took, bound)
				}
			}
			if !listen && !staleSeen {
				// Without the feed, the remote cache must have served
				// the ended session at least once, or this test does not
				// exercise the cache at all.
				t.Error("the remote instance never served an ended session: is its cache on?")
			}
		})
	}
}

// TestTwoProcessesListenerLost: the moment the remote listener's connection
// is killed (pg_terminate_backend, while a proxy keeps it from reconnecting),
// the remote cache falls back to its TTL, not its one-minute FeedTTL; once
// it reconnects, log-outs are refused within milliseconds again.
func TestTwoProcessesListenerLost(t *testing.T) {
	p := newPair(t, true, false)
	if took, _ := p.refusal(t, logoutCases[0]); took > feedBound {
		t.Fatalf("before the kill: refused after %v", took)
	}

	_, c := p.local.must(t, "POST", "/login?user=alice", "")
	cached := time.Now()
	p.remote.must(t, "GET", "/whoami", c) // cached, for FeedTTL while the feed is up
	p.proxy.refuse(true)
	start := time.Now()
	if n := terminate(t, p.d.admin(), p.remoteApp); n != 1 {
		t.Fatalf("terminated %d backends, want the remote listener's", n)
	}
	down := waitFor(t, 5*time.Second, "the remote feed to go down", func() bool {
		body, _ := p.remote.must(t, "GET", "/feed", "")
		return body == "down"
	})
	t.Logf("the remote listener reported the feed down %v after pg_terminate_backend returned (%v after it was called)", down, time.Since(start))
	p.local.must(t, "POST", "/logout", c)
	end := time.Now()
	for {
		if u, _ := p.remote.must(t, "GET", "/whoami", c); u == "" {
			break
		}
		if time.Since(cached) > ttlBound {
			t.Fatalf("with its listener gone, the remote instance served a logged-out session %v after caching it (its TTL is %v)", time.Since(cached), core.DefaultCacheTTL)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("with the listener down: refused %v after the log-out, %v after it was cached", time.Since(end), time.Since(cached))
	if body, _ := p.remote.must(t, "GET", "/feed", ""); body != "down" {
		t.Fatal("the listener reconnected through a proxy refusing connections: the refusal above may not be the TTL's")
	}

	p.proxy.refuse(false)
	up := waitFor(t, 30*time.Second, "the remote listener to reconnect", func() bool {
		body, _ := p.remote.must(t, "GET", "/feed", "")
		return body == "up"
	})
	t.Logf("reconnected %v after the proxy accepted connections again", up)
	for _, lc := range logoutCases {
		took, _ := p.refusal(t, lc)
		if took > feedBound {
			t.Errorf("%s after the reconnection: refused after %v, want < %v", lc.name, took, feedBound)
		}
	}
}

// TestTwoProcessesConcurrentWrites: requests on one session through both
// instances at once, distinct keys and increments of one counter, lose
// nothing, with stale caches (TTL), with the feed and with its feed of
// deletions only.
func TestTwoProcessesConcurrentWrites(t *testing.T) {
	for _, c := range []struct {
		name            string
		listen, deletes bool
	}{{"listener", true, false}, {"deletes-only", true, true}, {"ttl", false, false}} {
		listen := c.listen
		t.Run(c.name, func(t *testing.T) {
			if !listen && testing.Short() {
				t.Skip("the TTL variant runs without -short")
			}
			p := newPair(t, listen, c.deletes)
			_, c := p.local.must(t, "POST", "/login?user=alice", "")
			p.remote.must(t, "GET", "/whoami", c) // cached there
			const workers, each = 8, 10
			var wg sync.WaitGroup
			errs := make(chan error, 2*workers*each)
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						in := []*instance{p.local, p.remote}[(w+i)%2]
						if _, set, err := in.do("POST", fmt.Sprintf("/set?k=k%d_%d&v=%d", w, i, w*i), c); err != nil || (set != "" && set != c) {
							errs <- fmt.Errorf("set on %s: %v (cookie %q)", in.name, err, set)
						}
						if _, set, err := in.do("POST", "/incr", c); err != nil || (set != "" && set != c) {
							errs <- fmt.Errorf("incr on %s: %v (cookie %q)", in.name, err, set)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			tok, err := core.ParseToken(c)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := p.d.store.Load(context.Background(), tok.ID(), time.Now())
			if err != nil || rec == nil {
				t.Fatalf("loading the session: %v, %v", rec, err)
			}
			var missing []string
			for w := range workers {
				for i := range each {
					k := fmt.Sprintf("k%d_%d", w, i)
					if _, ok := rec.Data[k]; !ok {
						missing = append(missing, k)
					}
				}
			}
			if len(missing) > 0 {
				t.Errorf("%d of %d keys lost: %v", len(missing), workers*each, missing)
			}
			var n int64
			if err := p.d.store.Codec().Unmarshal(rec.Data["n"], &n); err != nil || n != workers*each {
				t.Errorf("counter %d (%v) after %d increments through both instances", n, err, workers*each)
			}
			t.Logf("%d sets and %d increments through two processes: version %d", workers*each, workers*each, rec.Version)
		})
	}
}

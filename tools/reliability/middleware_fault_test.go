package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
)

// requestDeadline is each request's budget on the server in the fault tests;
// restoredFor is how long the database stays up after a fault, and
// steadyAfter how soon after it returns every request must succeed.
const (
	requestDeadline = 500 * time.Millisecond
	restoredFor     = 2500 * time.Millisecond
	steadyAfter     = 2 * time.Second
)

// checkNoLeak registers a cleanup, to run after every later one, that waits
// (up to 5 s) for the goroutine count to come back to what it is now.
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var now int
		for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
			if now = runtime.NumGoroutine(); now <= before {
				return
			}
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutine leak: %d goroutines before, %d after everything was closed:\n%s", before, now, buf)
	})
}

// faultPhase is one stretch of the middleware fault test.
type faultPhase struct {
	name   string
	length time.Duration
	apply  func(*Proxy)
	down   bool // requests started in this phase must fail with a 5xx
}

// outcome is one request of the fault workload.
type outcome struct {
	phase   int
	start   time.Time
	status  int
	elapsed time.Duration
	err     error // transport error (never acceptable) or a bad answer
}

// TestMiddlewareFaults drives the counter workload through httpadapter and
// bunstore, with the database behind the fault proxy, from 8 goroutines:
// while the database is cut or stalled every request answers a 5xx within its
// deadline (never a panic, a dropped connection or a hang); within 5 s of the
// database returning requests succeed again; every session committed before
// the faults is intact and no increment acknowledged to a client is lost; no
// goroutine leaks; and no token issued during the run appears in the logs
// (captured as JSON) or in an error given to the error handler.
func TestMiddlewareFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts and stalls the databases for seconds; skipped with -short (.ci/run runs it)")
	}
	for _, name := range serverBackends {
		t.Run(name, func(t *testing.T) {
			checkNoLeak(t)
			fb := openFault(t, name)

			logs := &syncbuf.Buffer{}
			logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			prev := slog.Default()
			slog.SetDefault(logger)
			t.Cleanup(func() { slog.SetDefault(prev) })
			var errMu sync.Mutex
			var handlerErrs []string
			m, err := httpadapter.New(fb.store,
				httpadapter.WithExpiry(core.OnInactivity(time.Hour)),
				httpadapter.WithLogger(logger),
				httpadapter.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
					errMu.Lock()
					handlerErrs = append(handlerErrs, err.Error())
					errMu.Unlock()
					http.Error(w, "session could not be saved", http.StatusInternalServerError)
				}))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(Deadline(requestDeadline, m.Middleware(App())))
			t.Cleanup(srv.Close)
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			t.Cleanup(tr.CloseIdleConnections)
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			ctx := context.Background()

			// Sessions committed before any fault.
			const nClients = 8
			clients := make([]*Client, nClients)
			for i := range clients {
				c := NewClient(srv.URL, hc, httpadapter.DefaultCookieName, fmt.Sprintf("fault-client-%d", i))
				clients[i] = c
				if err := c.Init(ctx); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if err := c.Incr(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.SetParallel(ctx, 4, uint64(i)); err != nil {
					t.Fatal(err)
				}
			}

			phases := []faultPhase{
				{name: "up", length: 400 * time.Millisecond, apply: (*Proxy).Restore},
				{name: "cut", length: time.Second, apply: (*Proxy).Cut, down: true},
				{name: "restored after cut", length: restoredFor, apply: (*Proxy).Restore},
				{name: "stall", length: time.Second, apply: (*Proxy).Stall, down: true},
				{name: "restored after stall", length: restoredFor, apply: (*Proxy).Restore},
			}
			var phase atomic.Int32
			phaseStart := make([]time.Time, len(phases))
			stop := make(chan struct{})
			results := make([][]outcome, nClients)
			unknown := make([]int64, nClients) // failed increments that may have committed
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < 100000; n++ {
						select {
						case <-stop:
							return
						default:
						}
						o := outcome{phase: int(phase.Load()), start: time.Now()}
						res, err := c.Do(ctx, http.MethodPost, "/incr", nil, c.Cookie)
						o.status, o.elapsed = res.Status, res.Elapsed
						switch {
						case err == nil:
							st := res.State
							if st.Client != c.ID || st.Counter <= c.Counter || st.Counter > c.Counter+1+unknown[i] {
								o.err = fmt.Errorf("bad answer: %+v after counter %d with %d uncertain increments", st, c.Counter, unknown[i])
							}
							c.Counter, unknown[i] = st.Counter, 0
							c.take(res)
						case res.Status >= 500:
							unknown[i]++
							if res.Set {
								o.err = fmt.Errorf("a failed request set a cookie")
							}
						default:
							o.err = err // transport error or a non-5xx failure
						}
						results[i] = append(results[i], o)
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}
			for i, p := range phases {
				phase.Store(-1) // in transition: requests started now are not judged
				p.apply(fb.proxy)
				phaseStart[i] = time.Now()
				phase.Store(int32(i))
				time.Sleep(p.length)
			}
			close(stop)
			wg.Wait()
			fb.proxy.Restore()

			// Judge every request.
			for i, p := range phases {
				var ok, failed, late, bad int
				var maxElapsed, lastFailure time.Duration
				firstOK := map[int]time.Time{}
				for ci, rs := range results {
					for _, o := range rs {
						if o.phase != i {
							continue
						}
						maxElapsed = max(maxElapsed, o.elapsed)
						if o.err != nil {
							bad++
							t.Errorf("%s: client %d: %v", p.name, ci, o.err)
							continue
						}
						if o.elapsed > requestDeadline+time.Second {
							late++
							t.Errorf("%s: a request took %v; its deadline was %v", p.name, o.elapsed, requestDeadline)
						}
						end := o.start.Add(o.elapsed)
						if o.status == http.StatusOK && p.down && (i+1 == len(phases) || end.Before(phaseStart[i+1])) {
							t.Errorf("%s: a request succeeded while the database was unreachable (it took %v)", p.name, o.elapsed)
						}
						if o.status == http.StatusOK {
							ok++
							if _, seen := firstOK[ci]; !seen {
								firstOK[ci] = end
							}
						} else {
							failed++
							inFlight := i+1 < len(phases) && !end.Before(phaseStart[i+1])
							if !p.down && !inFlight {
								lastFailure = max(lastFailure, end.Sub(phaseStart[i]))
								if i > 0 && o.start.Sub(phaseStart[i]) > steadyAfter {
									t.Errorf("%s: a request started %v after the database returned failed with %d", p.name, o.start.Sub(phaseStart[i]), o.status)
								}
							}
							if !p.down && os.Getenv("RELIABILITY_DEBUG") != "" {
								t.Logf("%s: client %d: status %d after %v, started %v into the phase", p.name, ci, o.status, o.elapsed, o.start.Sub(phaseStart[i]))
							}
						}
					}
				}
				if p.down && failed == 0 {
					t.Errorf("%s: no request was even tried", p.name)
				}
				msg := fmt.Sprintf("%s %s: %d ok, %d 5xx, slowest %v", name, p.name, ok, failed, maxElapsed.Round(time.Millisecond))
				if !p.down && i > 0 {
					var recovered time.Duration
					for ci := range clients {
						at, seen := firstOK[ci]
						if !seen {
							t.Errorf("%s: client %d never succeeded again", p.name, ci)
							continue
						}
						recovered = max(recovered, at.Sub(phaseStart[i]))
					}
					if recovered > 5*time.Second {
						t.Errorf("%s: requests succeeded again only %v after the database returned", p.name, recovered)
					}
					msg += fmt.Sprintf(", every client served again %v and the last failure ended %v after the database returned",
						recovered.Round(time.Millisecond), lastFailure.Round(time.Millisecond))
				}
				t.Log(msg)
			}

			// Every session committed before the faults is intact, and no
			// acknowledged increment is lost.
			for i, c := range clients {
				res, err := c.Do(ctx, http.MethodGet, "/read", nil, c.Cookie)
				if err != nil {
					t.Fatalf("client %d after the faults: %v", i, err)
				}
				st := res.State
				if !st.Present || st.Client != c.ID || st.Counter < c.Counter || st.Counter > c.Counter+unknown[i] {
					t.Errorf("client %d after the faults: %+v; acknowledged counter %d, %d uncertain", i, st, c.Counter, unknown[i])
				}
				for k, v := range c.Keys {
					if st.Keys[k] != v {
						t.Errorf("client %d after the faults: key %s = %q, want %q", i, k, st.Keys[k], v)
					}
				}
			}

			// No token in the logs or in the errors handed to the error handler.
			out := logs.String()
			if os.Getenv("RELIABILITY_DEBUG") != "" {
				t.Logf("logs:\n%s", out)
			}
			if !strings.Contains(out, `"level":"ERROR"`) {
				t.Errorf("the faults logged no error: the log capture is broken?\n%s", out)
			}
			errMu.Lock()
			errs := strings.Join(handlerErrs, "\n")
			errMu.Unlock()
			tokens := 0
			for _, c := range clients {
				for _, tok := range c.Tokens() {
					tokens++
					if strings.Contains(out, tok) {
						t.Errorf("token %s appears in the logs", tok)
					}
					if strings.Contains(errs, tok) {
						t.Errorf("token %s appears in an error given to the error handler", tok)
					}
				}
			}
			t.Logf("%s: %d tokens checked against %d bytes of logs and %d handler errors", name, tokens, len(out), len(handlerErrs))
		})
	}
}

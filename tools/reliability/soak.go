package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// SoakOptions configure Soak. The zero value works.
type SoakOptions struct {
	// Clients is the number of concurrent clients. Default 8.
	Clients int
	// Duration is how long clients keep sending requests. Default 3 s.
	Duration time.Duration
	// Parallel is how many concurrent requests a client sends on its one
	// session when it writes distinct keys. Default 4.
	Parallel int
	// RequestTimeout is every request's deadline on the server (and, plus
	// 5 s, on the client). Default 5 s.
	RequestTimeout time.Duration
	// CookieName is the manager's cookie name. Default "id".
	CookieName string
	// Seed makes the sequence of actions repeatable; 0 picks one.
	Seed uint64
	// Log, if set, receives the first few errors and violations as they happen.
	Log func(format string, args ...any)
}

// SoakReport is the outcome of a soak: Errors and Violations must be 0.
type SoakReport struct {
	Requests   int64         // HTTP requests sent
	Errors     int64         // transport errors and non-200 answers
	Violations int64         // broken invariants
	Duration   time.Duration // wall time of the traffic
	Sessions   int64         // sessions started
	Cycles     int64         // CycleID calls
	Flushes    int64         // Flush calls
	Samples    []string      // the first errors and violations
}

func (r SoakReport) String() string {
	rate := 0.0
	if r.Duration > 0 {
		rate = float64(r.Requests) / r.Duration.Seconds()
	}
	return fmt.Sprintf("requests=%d errors=%d violations=%d duration=%v (%.0f req/s) sessions=%d cycles=%d flushes=%d",
		r.Requests, r.Errors, r.Violations, r.Duration.Round(time.Millisecond), rate, r.Sessions, r.Cycles, r.Flushes)
}

type soakRun struct {
	opts SoakOptions
	rep  SoakReport
	mu   sync.Mutex
}

func (s *soakRun) sample(kind string, format string, args ...any) {
	msg := kind + ": " + fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rep.Samples) < 20 {
		s.rep.Samples = append(s.rep.Samples, msg)
		if s.opts.Log != nil {
			s.opts.Log("%s", msg)
		}
	}
}

func (s *soakRun) violation(format string, args ...any) {
	atomic.AddInt64(&s.rep.Violations, 1)
	s.sample("violation", format, args...)
}

// Soak serves App through m's middleware on a loopback test server and runs
// mixed traffic against it: new sessions, reads, counter increments, parallel
// writes of distinct keys on one session, CycleID, Flush and abandoned
// sessions. It checks, at every answer, that:
//
//   - a client never sees another client's data (each session holds its
//     client's id and only the keys that client set);
//   - a counter never goes backwards, and no increment is lost;
//   - concurrent writes of distinct keys on one session are never lost;
//   - a flushed session, or the old token of a cycled one, never comes back.
//
// It returns when opts.Duration has passed or ctx ends.
func Soak(ctx context.Context, m *httpadapter.Manager, opts SoakOptions) SoakReport {
	if opts.Clients <= 0 {
		opts.Clients = 8
	}
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.CookieName == "" {
		opts.CookieName = httpadapter.DefaultCookieName
	}
	if opts.Seed == 0 {
		opts.Seed = rand.Uint64()
	}
	srv := httptest.NewServer(Deadline(opts.RequestTimeout, m.Middleware(App())))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: opts.Clients * opts.Parallel}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: opts.RequestTimeout + 5*time.Second}

	run := &soakRun{opts: opts}
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range opts.Clients {
		c := NewClient(srv.URL, hc, opts.CookieName, fmt.Sprintf("client-%d-%x", i, opts.Seed))
		c.onRequest = func() { atomic.AddInt64(&run.rep.Requests, 1) }
		rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.client(ctx, c, rng)
		}()
	}
	wg.Wait()
	run.rep.Duration = time.Since(start)
	return run.rep
}

// client runs one client's actions until ctx ends. Requests in flight
// when it ends finish normally: the soak's end is not an error.
func (s *soakRun) client(ctx context.Context, c *Client, rng *rand.Rand) {
	reqCtx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		ctx := reqCtx
		var err error
		switch p := rng.IntN(100); {
		case !c.Has:
			err = c.Init(ctx)
			if err == nil {
				atomic.AddInt64(&s.rep.Sessions, 1)
			}
		case p < 30:
			err = c.Check(ctx)
		case p < 55:
			err = c.Incr(ctx)
		case p < 70:
			err = c.SetParallel(ctx, s.opts.Parallel, rng.Uint64())
		case p < 80:
			err = c.Cycle(ctx)
			if err == nil {
				atomic.AddInt64(&s.rep.Cycles, 1)
			}
		case p < 85:
			err = c.Flush(ctx)
			if err == nil {
				atomic.AddInt64(&s.rep.Flushes, 1)
			}
		case p < 95:
			err = c.CheckDead(ctx)
		default:
			c.Abandon()
		}
		if err == nil {
			continue
		}
		if v, ok := err.(*Violation); ok {
			s.violation("%s: %s", c.ID, v.Msg)
			c.Abandon() // start over from a known state
			continue
		}
		atomic.AddInt64(&s.rep.Errors, 1)
		s.sample("error", "%s: %v", c.ID, err)
		c.Abandon()
	}
}

// Violation is an error that reports a broken invariant, as opposed to a
// request that failed.
type Violation struct{ Msg string }

func (v *Violation) Error() string { return "invariant violated: " + v.Msg }

func violatef(format string, args ...any) error {
	return &Violation{Msg: fmt.Sprintf(format, args...)}
}

// Client is one simulated browser with one session: it sends requests to App
// with its cookie, follows Set-Cookie, and remembers what it stored so that
// every answer can be checked.
type Client struct {
	ID string

	base       string
	hc         *http.Client
	cookieName string
	onRequest  func()

	// Cookie is the session cookie's value ("" when the client has none).
	Cookie string
	// Has reports whether the client has a session it expects to exist.
	Has bool
	// Counter is the last counter value the server acknowledged.
	Counter int64
	// Keys are the keys the client set and the server acknowledged.
	Keys map[string]string
	// Dead holds cookies of flushed sessions and old tokens of cycled ones
	// (the last few): they must never name a session again.
	Dead   []string
	mu     sync.Mutex
	tokens []string
}

// Tokens returns every cookie value the server ever sent this client.
func (c *Client) Tokens() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tokens...)
}

// NewClient returns a client of the App served at base.
func NewClient(base string, hc *http.Client, cookieName, id string) *Client {
	return &Client{ID: id, base: base, hc: hc, cookieName: cookieName, Keys: map[string]string{}}
}

// Result is one answer of App.
type Result struct {
	Status  int
	State   State
	Cookie  string // the new cookie value, if Set-Cookie carried one
	Set     bool   // a Set-Cookie for the session cookie came
	Removed bool   // it was a removal cookie (Max-Age=0)
	Elapsed time.Duration
}

// Do sends one request with cookie (none if "") and returns the answer; any
// status other than 200 is an error (the Result is still returned).
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, cookie string) (Result, error) {
	var res Result
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return res, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", c.cookieName+"="+cookie)
	}
	if c.onRequest != nil {
		c.onRequest()
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("%s %s: %w", method, path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.Elapsed = time.Since(start)
	res.Status = resp.StatusCode
	if err != nil {
		return res, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name != c.cookieName {
			continue
		}
		res.Set = true
		if ck.MaxAge < 0 || ck.Value == "" {
			res.Removed = true
		} else {
			res.Cookie = ck.Value
			c.mu.Lock()
			c.tokens = append(c.tokens, ck.Value)
			c.mu.Unlock()
		}
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("%s %s: status %d: %.100s", method, path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &res.State); err != nil {
		return res, fmt.Errorf("%s %s: decoding %q: %w", method, path, body, err)
	}
	return res, nil
}

// check verifies an answer on the client's live session.
func (c *Client) check(what string, st State) error {
	if !st.Present {
		return violatef("%s: the session is gone (counter %d, %d keys)", what, c.Counter, len(c.Keys))
	}
	if st.Client != c.ID {
		return violatef("%s: saw client %q's data", what, st.Client)
	}
	if st.Counter < c.Counter {
		return violatef("%s: counter went backwards from %d to %d", what, c.Counter, st.Counter)
	}
	if st.Counter != c.Counter {
		return violatef("%s: counter is %d, this client's last increment gave %d", what, st.Counter, c.Counter)
	}
	for k, v := range c.Keys {
		if st.Keys[k] != v {
			return violatef("%s: key %s is %q, want %q (a write was lost)", what, k, st.Keys[k], v)
		}
	}
	for k := range st.Keys {
		if _, ok := c.Keys[k]; !ok {
			return violatef("%s: key %s was never set by this client", what, k)
		}
	}
	return nil
}

func (c *Client) take(res Result) {
	if res.Removed {
		c.Cookie = ""
	} else if res.Cookie != "" {
		c.Cookie = res.Cookie
	}
}

func (c *Client) bury(cookie string) {
	if cookie == "" {
		return
	}
	c.Dead = append(c.Dead, cookie)
	if len(c.Dead) > 8 {
		c.Dead = c.Dead[len(c.Dead)-8:]
	}
}

// Init starts a new session for the client.
func (c *Client) Init(ctx context.Context) error {
	res, err := c.Do(ctx, http.MethodPost, "/init", url.Values{"client": {c.ID}}, "")
	if err != nil {
		return err
	}
	if res.Cookie == "" {
		return violatef("init: no session cookie")
	}
	c.Cookie, c.Has, c.Counter = res.Cookie, true, 0
	clear(c.Keys)
	return c.check("init", res.State)
}

// Check reads the session and checks it.
func (c *Client) Check(ctx context.Context) error {
	res, err := c.Do(ctx, http.MethodGet, "/read", nil, c.Cookie)
	if err != nil {
		return err
	}
	return c.check("read", res.State)
}

// Incr increments the counter.
func (c *Client) Incr(ctx context.Context) error {
	res, err := c.Do(ctx, http.MethodPost, "/incr", nil, c.Cookie)
	if err != nil {
		return err
	}
	c.take(res)
	c.Counter++
	return c.check("incr", res.State)
}

// SetParallel sends n concurrent requests on the session, each setting its
// own key, then checks that every key is there.
func (c *Client) SetParallel(ctx context.Context, n int, nonce uint64) error {
	type out struct {
		res Result
		err error
	}
	outs := make([]out, n)
	want := map[string]string{}
	var wg sync.WaitGroup
	for i := range n {
		k := "k" + itoa(i)
		v := fmt.Sprintf("%x-%d", nonce, i)
		want[k] = v
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Do(ctx, http.MethodPost, "/set", url.Values{"k": {k}, "v": {v}}, c.Cookie)
			outs[i] = out{res, err}
		}()
	}
	wg.Wait()
	for _, o := range outs {
		if o.err != nil {
			return o.err
		}
		if o.res.Removed || (o.res.Cookie != "" && o.res.Cookie != c.Cookie) {
			return violatef("parallel set: the cookie changed to %q", o.res.Cookie)
		}
		if !o.res.State.Present || o.res.State.Client != c.ID {
			return violatef("parallel set: answered client %q (present %v)", o.res.State.Client, o.res.State.Present)
		}
	}
	maps.Copy(c.Keys, want)
	return c.Check(ctx)
}

// Cycle gives the session a new id; the old cookie must be dead at once.
func (c *Client) Cycle(ctx context.Context) error {
	old := c.Cookie
	res, err := c.Do(ctx, http.MethodPost, "/cycle", nil, c.Cookie)
	if err != nil {
		return err
	}
	if res.Cookie == "" || res.Cookie == old {
		return violatef("cycle: no new cookie (got %q)", res.Cookie)
	}
	c.Cookie = res.Cookie
	c.bury(old)
	if err := c.check("cycle", res.State); err != nil {
		return err
	}
	return c.checkDead(ctx, old)
}

// Flush deletes the session; its cookie must be dead at once.
func (c *Client) Flush(ctx context.Context) error {
	old := c.Cookie
	res, err := c.Do(ctx, http.MethodPost, "/flush", nil, c.Cookie)
	if err != nil {
		return err
	}
	if !res.Removed {
		return violatef("flush: no removal cookie")
	}
	if res.State.Present || len(res.State.Keys) > 0 {
		return violatef("flush: the answer still shows data: %+v", res.State)
	}
	c.bury(old)
	c.Abandon()
	return c.checkDead(ctx, old)
}

// CheckDead presents a random dead cookie: it must name no session.
func (c *Client) CheckDead(ctx context.Context) error {
	if len(c.Dead) == 0 {
		return c.Check(ctx)
	}
	return c.checkDead(ctx, c.Dead[rand.IntN(len(c.Dead))])
}

func (c *Client) checkDead(ctx context.Context, cookie string) error {
	res, err := c.Do(ctx, http.MethodGet, "/read", nil, cookie)
	if err != nil {
		return err
	}
	if res.State.Present || len(res.State.Keys) > 0 || res.State.Counter != 0 {
		return violatef("a flushed or cycled-away session came back: %+v", res.State)
	}
	return nil
}

// Abandon forgets the session without telling the server (it is left to
// expire), so the next action starts a new one.
func (c *Client) Abandon() {
	c.Cookie, c.Has, c.Counter = "", false, 0
	clear(c.Keys)
}

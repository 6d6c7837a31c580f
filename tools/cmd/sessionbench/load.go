package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Workloads.
const (
	workloadCounter = "counter" // existing session: read, increment, write
	workloadRead    = "read"    // existing session: read only
	workloadNew     = "new"     // no cookie: a new session per request
)

var workloadNames = []string{workloadCounter, workloadRead, workloadNew}

// maxRequestsPerWorker bounds each client goroutine's loop, whatever the
// duration.
const maxRequestsPerWorker = 10_000_000

// newClient returns a keep-alive client for concurrency connections to one
// server.
func newClient(concurrency int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			MaxConnsPerHost:     concurrency,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// sample is what one round against one server measured.
type sample struct {
	requests  int
	errors    int
	firstErr  string
	elapsed   time.Duration
	latencies []time.Duration // of successful requests
	cpu       cpuTimes        // used during the round (this process, the database)
}

func (s *sample) add(o sample) {
	s.requests += o.requests
	s.errors += o.errors
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
	if s.elapsed == 0 { // nothing added yet: every round takes time
		s.cpu = o.cpu
	} else {
		s.cpu = s.cpu.plus(o.cpu)
	}
	s.elapsed += o.elapsed
	s.latencies = append(s.latencies, o.latencies...)
}

// drive sends requests of workload to baseURL from concurrency goroutines
// for d, each request naming one of cookies at random (none for the new
// workload), and measures them. Requests started before d is over finish.
func drive(ctx context.Context, client *http.Client, baseURL string, cookies []string, workload string, concurrency int, d time.Duration) sample {
	path := pathCounter
	if workload == workloadRead {
		path = pathRead
	}
	url := baseURL + path
	results := make([]sample, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range concurrency {
		wg.Go(func() {
			res := &results[w]
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			fail := func(err error) {
				res.errors++
				if res.firstErr == "" {
					res.firstErr = err.Error()
				}
			}
			for i := 0; i < maxRequestsPerWorker && ctx.Err() == nil && time.Now().Before(deadline); i++ {
				cookie := ""
				if workload != workloadNew {
					cookie = cookies[rng.IntN(len(cookies))]
				}
				t0 := time.Now()
				n, set, err := get(ctx, client, url, cookie)
				lat := time.Since(t0)
				res.requests++
				switch {
				case err != nil:
					fail(err)
				case workload == workloadNew && (n != 1 || set == ""):
					fail(fmt.Errorf("new session: count %d, cookie %q", n, set))
				case workload == workloadCounter && n < 2:
					fail(fmt.Errorf("counter on a seeded session: count %d, want at least 2", n))
				case workload == workloadRead && n < 1:
					fail(fmt.Errorf("read of a seeded session: count %d, want at least 1", n))
				default:
					res.latencies = append(res.latencies, lat)
				}
			}
		})
	}
	wg.Wait()
	var total sample
	for _, r := range results {
		total.add(r)
	}
	total.elapsed = time.Since(start)
	return total
}

// get sends one GET with cookie (a "name=value" pair, or "") and returns the
// count the body reports and the session cookie the response set.
func get(ctx context.Context, client *http.Client, url, cookie string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	n, ok := parseCount(body)
	if !ok {
		return 0, "", fmt.Errorf("unexpected body %.200q", body)
	}
	return n, cookieOf(resp), nil
}

// seed creates n sessions on a server through HTTP (one request without a
// cookie each, leaving count 1) and returns their cookies.
func seed(ctx context.Context, client *http.Client, baseURL string, n, concurrency int) ([]string, error) {
	cookies := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, set, err := get(ctx, client, baseURL+pathCounter, "")
			if err == nil && (c != 1 || set == "") {
				err = fmt.Errorf("seeding: count %d, cookie %q", c, set)
			}
			cookies[i], errs[i] = set, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return cookies, nil
}

// sumCounts reads every session's count through /read.
func sumCounts(ctx context.Context, client *http.Client, baseURL string, cookies []string) (int, error) {
	sum := 0
	for _, c := range cookies {
		n, _, err := get(ctx, client, baseURL+pathRead, c)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// percentile returns the p-th percentile (0..1) of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

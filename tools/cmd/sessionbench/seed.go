package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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

// newClient returns a keep-alive client for concurrency connections to one
// server. The parent seeds sessions and reads their counts with it, outside
// the measured rounds; the load comes from wrk.
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

// sumCounts reads every session's count through countPath (as /read
// answers, from the database), from concurrency goroutines.
func sumCounts(ctx context.Context, client *http.Client, baseURL string, cookies []string, concurrency int) (int, error) {
	counts := make([]int, len(cookies))
	errs := make([]error, len(cookies))
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for i, c := range cookies {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			counts[i], _, errs[i] = get(ctx, client, baseURL+countPath, c)
		})
	}
	wg.Wait()
	sum := 0
	for i, n := range counts {
		if errs[i] != nil {
			return 0, errs[i]
		}
		sum += n
	}
	return sum, nil
}

// cookieOf returns "name=value" of the Set-Cookie in resp, if any.
func cookieOf(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Value != "" && c.MaxAge >= 0 {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// parseCount reads N from "Current count: N".
func parseCount(body []byte) (int, bool) {
	s, ok := strings.CutPrefix(string(body), "Current count: ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

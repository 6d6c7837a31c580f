package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
)

type profile struct {
	Name string
	Age  int
}

// sessionValues cover what applications store: strings, numbers, slices,
// structs, times, bytes and maps with non-string keys.
var sessionValues = map[string]any{
	"user":    "alice <admin>",
	"count":   42,
	"neg":     int64(-7),
	"ratio":   0.5,
	"ok":      true,
	"none":    nil,
	"roles":   []string{"admin", "ops"},
	"profile": profile{Name: "Bob", Age: 7},
	"seen":    time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC),
	"blob":    []byte{1, 2, 3},
	"flags":   map[int]bool{1: true},
}

const sessionValuesJSON = `{
	"user": "alice <admin>", "count": 42, "neg": -7, "ratio": 0.5, "ok": true, "none": null,
	"roles": ["admin", "ops"], "profile": {"Name": "Bob", "Age": 7},
	"seen": "2024-01-02T03:04:05.123456789Z", "blob": "AQID", "flags": {"1": true}
}`

func TestInspectRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, s *bunstore.Store) {
		before := time.Now()
		tok := newSession(t, s, core.OnInactivity(time.Hour), sessionValues)
		other := newSession(t, s, core.OnInactivity(time.Hour), map[string]any{"user": "carol"})

		// inspect TOKEN --json: the data as JSON, expiry and version.
		r := runCLI(t, nil, append([]string{"inspect", tok.String(), "--json"}, b.args...)...)
		checkNoSecret(t, r, tok, other)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("inspect: exit %d, stderr %q", r.code, r.stderr)
		}
		var got struct {
			ID        string         `json:"id"`
			Expiry    time.Time      `json:"expiry"`
			ExpiresIn float64        `json:"expires_in_seconds"`
			Version   uint64         `json:"version"`
			Data      map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("inspect output is not JSON: %v\n%s", err, r.stdout)
		}
		var want map[string]any
		if err := json.Unmarshal([]byte(sessionValuesJSON), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Data, want) {
			t.Errorf("data:\n got %v\nwant %v", got.Data, want)
		}
		if got.ID != string(tok.ID()) || got.Version != 1 {
			t.Errorf("id %q version %d, want %q 1", got.ID, got.Version, tok.ID())
		}
		if lo, hi := before.Add(time.Hour-time.Second), time.Now().Add(time.Hour+time.Second); got.Expiry.Before(lo) || got.Expiry.After(hi) {
			t.Errorf("expiry %v, want between %v and %v", got.Expiry, lo, hi)
		}
		if got.ExpiresIn < 3590 || got.ExpiresIn > 3601 {
			t.Errorf("expires_in_seconds %v, want about 3600", got.ExpiresIn)
		}

		// inspect --id, text output: the id, version and data, never the token.
		r = runCLI(t, nil, append([]string{"inspect", "--id", string(other.ID())}, b.args...)...)
		checkNoSecret(t, r, tok, other)
		if r.code != 0 {
			t.Fatalf("inspect --id: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, s := range []string{string(other.ID()), "version:  1", `"user": "carol"`, "expiry:   "} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("inspect --id output lacks %q:\n%s", s, r.stdout)
			}
		}

		// revoke TOKEN: gone for the store, the other session stays.
		r = runCLI(t, nil, append([]string{"revoke", tok.String()}, b.args...)...)
		checkNoSecret(t, r, tok, other)
		if r.code != 0 || !strings.Contains(r.stdout, "revoked session "+string(tok.ID())) {
			t.Fatalf("revoke: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if loaded(t, s, tok.ID()) {
			t.Error("the revoked session still loads")
		}
		if !loaded(t, s, other.ID()) {
			t.Error("revoke removed another session")
		}

		// Now unknown: inspect and revoke exit 1 with one line.
		for _, cmd := range [][]string{{"inspect", tok.String()}, {"revoke", tok.String()}, {"inspect", "--json", "--id", string(tok.ID())}} {
			r = runCLI(t, nil, append(cmd, b.args...)...)
			checkNoSecret(t, r, tok, other)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no live session") {
				t.Errorf("%s of a revoked session: exit %d, stdout %q, stderr %q; want exit 1", cmd[0], r.code, r.stdout, r.stderr)
			}
			checkOneLineError(t, r)
		}

		// revoke --id --json on the other one.
		r = runCLI(t, nil, append([]string{"revoke", "--json", "--id", string(other.ID())}, b.args...)...)
		var rv map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rv) != nil || rv["revoked"] != true || rv["id"] != string(other.ID()) {
			t.Fatalf("revoke --id --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if loaded(t, s, other.ID()) {
			t.Error("revoke --id left the session")
		}

		// An expired session is not shown.
		exp, _ := createRecord(t, s, time.Now().Add(-time.Minute), map[string]any{"k": 1})
		r = runCLI(t, nil, append([]string{"inspect", exp.String()}, b.args...)...)
		if r.code != 1 {
			t.Errorf("inspect of an expired session: exit %d, stdout %q", r.code, r.stdout)
		}
	})
}

func TestPurge(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, s *bunstore.Store) {
		var live, expired []core.Token
		for i := range 3 {
			live = append(live, newSession(t, s, core.OnInactivity(time.Hour), map[string]any{"i": i}))
		}
		// One that expires in a moment must survive: it is live now.
		soon, _ := createRecord(t, s, time.Now().Add(time.Minute), map[string]any{"soon": true})
		live = append(live, soon)
		for i := range 7 {
			tok, _ := createRecord(t, s, time.Now().Add(-time.Duration(i+1)*time.Hour), map[string]any{"i": i})
			expired = append(expired, tok)
		}
		// An hour-old expiry from a session that once was live.
		old := newSession(t, s, core.AtDateTime(time.Now().Add(-time.Hour)), map[string]any{"x": 1})
		_ = old // AtDateTime in the past: the session saved already expired
		expired = append(expired, old)
		if len(expired) != 8 {
			t.Fatalf("set up %d expired sessions, want 8", len(expired))
		}

		// Batches of 3: 8 expired rows take 3 statements.
		r := runCLI(t, nil, append([]string{"purge", "--batch", "3"}, b.args...)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("purge: exit %d, stderr %q", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "purged 8 expired sessions") {
			t.Errorf("purge output %q, want 'purged 8 expired sessions'", r.stdout)
		}
		if strings.Contains(r.stdout, "\x1b[") {
			t.Errorf("purge wrote terminal controls to a non-terminal: %q", r.stdout)
		}
		for _, tok := range live {
			if !loaded(t, s, tok.ID()) {
				t.Error("purge removed a live session")
			}
		}
		n := countRows(t, b, s)
		if n != int64(len(live)) {
			t.Errorf("%d rows left, want %d", n, len(live))
		}

		// Nothing left to purge; JSON output.
		r = runCLI(t, nil, append([]string{"purge", "--json"}, b.args...)...)
		var out purgeOutput
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Deleted != 0 {
			t.Errorf("second purge: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// countRows counts every row of the store's table, expired ones included.
func countRows(t *testing.T, b backend, s *bunstore.Store) int64 {
	t.Helper()
	table := s.TableName()
	if s.SchemaName() != "" {
		table = s.SchemaName() + "." + table
	}
	n, err := b.db.NewSelect().TableExpr(table).Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

func TestStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, s *bunstore.Store) {
		statsOf := func() statsOutput {
			t.Helper()
			r := runCLI(t, nil, append([]string{"stats", "--json"}, b.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("stats: exit %d, stderr %q", r.code, r.stderr)
			}
			var out statsOutput
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("stats output: %v\n%s", err, r.stdout)
			}
			return out
		}
		if got := statsOf(); got.Live != 0 || got.Expired != 0 || got.DataBytes.Max != 0 {
			t.Errorf("empty table: %+v", got)
		}

		// 20 live sessions of distinct sizes (inserted out of order) and 5
		// expired ones larger than all of them.
		var sizes []int64
		for _, i := range []int{7, 3, 19, 0, 11, 5, 14, 1, 9, 17, 2, 13, 6, 18, 4, 10, 16, 8, 15, 12} {
			_, rec := createRecord(t, s, time.Now().Add(time.Hour), map[string]any{"v": strings.Repeat("x", 10+i*37)})
			blob, err := s.Codec().EncodeMap(rec.Data)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, int64(len(blob)))
		}
		for range 5 {
			createRecord(t, s, time.Now().Add(-time.Hour), map[string]any{"v": strings.Repeat("y", 5000)})
		}
		slices.Sort(sizes)
		got := statsOf()
		if got.Live != 20 || got.Expired != 5 {
			t.Errorf("live %d expired %d, want 20 5", got.Live, got.Expired)
		}
		var total int64
		for _, n := range sizes {
			total += n
		}
		// Nearest rank on 20 values: p50 is the 10th, p90 the 18th, p99 the 20th.
		d := got.DataBytes
		if d.P50 != sizes[9] || d.P90 != sizes[17] || d.P99 != sizes[19] || d.Max != sizes[19] || d.Total != total {
			t.Errorf("sizes %+v, want p50 %d p90 %d p99 %d max %d total %d", d, sizes[9], sizes[17], sizes[19], sizes[19], total)
		}
		if want := s.TableName(); !strings.HasSuffix(got.Table, want) {
			t.Errorf("table %q, want ...%q", got.Table, want)
		}

		// Text output says the same.
		r := runCLI(t, nil, append([]string{"stats"}, b.args...)...)
		for _, want := range []string{"live:     20\n", "expired:  5\n", fmt.Sprintf("p50 %d,", sizes[9]), fmt.Sprintf("max %d,", sizes[19])} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stats text lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

func TestNearestRank(t *testing.T) {
	for _, c := range []struct{ p, n, want int64 }{
		{50, 1, 1}, {99, 1, 1}, {50, 2, 1}, {90, 10, 9}, {99, 10, 10}, {50, 20, 10},
		{90, 20, 18}, {99, 100, 99}, {99, 101, 100}, {50, 3, 2}, {90, 1000, 900},
	} {
		if got := nearestRank(c.p, c.n); got != c.want {
			t.Errorf("nearestRank(%d, %d) = %d, want %d", c.p, c.n, got, c.want)
		}
	}
}

func TestUserSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, s *bunstore.Store) {
		ctx := t.Context()
		user := "user-" + string(core.Token{}.ID()) + fmt.Sprint(time.Now().UnixNano())
		var tokens []core.Token
		for i := range 3 {
			sess := core.NewSession(s, "", &core.Options{Expiry: core.OnInactivity(time.Hour)})
			if err := sess.Insert(ctx, "i", i); err != nil {
				t.Fatal(err)
			}
			if err := sess.SetUser(ctx, user); err != nil {
				t.Fatal(err)
			}
			if _, err := sess.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, sess.Token())
		}
		other := newSession(t, s, core.OnInactivity(time.Hour), map[string]any{"k": 1})

		// sessions --user U --json: the three, oldest first, never a token.
		r := runCLI(t, nil, append([]string{"sessions", "--user", user, "--json"}, b.args...)...)
		checkNoSecret(t, r, append(tokens, other)...)
		var out struct {
			User     string `json:"user"`
			Sessions []struct {
				ID      string     `json:"id"`
				Created *time.Time `json:"created"`
			} `json:"sessions"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.User != user || len(out.Sessions) != 3 {
			t.Fatalf("sessions --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		for i, sess := range out.Sessions {
			if sess.ID != string(tokens[i].ID()) || sess.Created == nil {
				t.Fatalf("session %d = %+v, want id %s with a creation time", i, sess, tokens[i].ID())
			}
		}
		r = runCLI(t, nil, append([]string{"sessions", "--user", user}, b.args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "3 live sessions of user "+user) || !strings.Contains(r.stdout, string(tokens[2].ID())) {
			t.Fatalf("sessions: exit %d, stdout %q", r.code, r.stdout)
		}

		// revoke --user U --except ID: log out the other devices.
		r = runCLI(t, nil, append([]string{"revoke", "--user", user, "--except", string(tokens[0].ID()), "--json"}, b.args...)...)
		var rv map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rv) != nil || rv["revoked"] != float64(2) {
			t.Fatalf("revoke --user --except: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if !loaded(t, s, tokens[0].ID()) || loaded(t, s, tokens[1].ID()) || loaded(t, s, tokens[2].ID()) || !loaded(t, s, other.ID()) {
			t.Fatal("revoke --user --except removed the wrong sessions")
		}
		// revoke --user U: everywhere.
		r = runCLI(t, nil, append([]string{"revoke", "--user", user}, b.args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "revoked 1 sessions of user "+user) || loaded(t, s, tokens[0].ID()) {
			t.Fatalf("revoke --user: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = runCLI(t, nil, append([]string{"sessions", "--user", user, "--json"}, b.args...)...)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Sessions) != 0 {
			t.Fatalf("sessions after revoking all: exit %d, stdout %q", r.code, r.stdout)
		}
	})
}

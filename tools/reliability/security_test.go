package reliability

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// TestSessionFixation: a login that cycles the session id invalidates the old
// token at once: a request with the old cookie, sent while the login request
// is still running (after CycleID, before its response), finds no session,
// and so does every later one; the new cookie carries the login. Run on a
// server database and on SQLite, in every cookie mode.
func TestSessionFixation(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			store := openBackend(t, backend)
			for mode, opts := range cookieModes(t) {
				t.Run(mode, func(t *testing.T) {
					m, err := httpadapter.New(store, opts...)
					if err != nil {
						t.Fatal(err)
					}
					cycled := make(chan struct{})
					proceed := make(chan struct{})
					mux := http.NewServeMux()
					mux.Handle("/", App())
					mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
						s := httpadapter.FromContext(r.Context())
						if err := s.CycleID(r.Context()); err != nil {
							http.Error(w, "cycle failed", http.StatusInternalServerError)
							return
						}
						close(cycled)
						select {
						case <-proceed:
						case <-time.After(5 * time.Second):
						}
						if err := s.Insert(r.Context(), "user", "alice"); err != nil {
							http.Error(w, "insert failed", http.StatusInternalServerError)
							return
						}
						w.WriteHeader(http.StatusNoContent)
					})
					srv := httptest.NewServer(m.Middleware(mux))
					defer srv.Close()
					ctx := context.Background()

					// The attacker plants a session (its cookie) in the victim's browser.
					victim := NewClient(srv.URL, srv.Client(), httpadapter.DefaultCookieName, "victim")
					if err := victim.Init(ctx); err != nil {
						t.Fatal(err)
					}
					planted := victim.Cookie

					type loginResult struct {
						res Result
						err error
					}
					done := make(chan loginResult, 1)
					go func() {
						res, err := victim.Do(ctx, http.MethodPost, "/login", nil, planted)
						if err == nil || res.Status == http.StatusNoContent {
							err = nil
						}
						done <- loginResult{res, err}
					}()
					select {
					case <-cycled:
					case <-time.After(5 * time.Second):
						t.Fatal("the login never cycled the session")
					}
					// The login is still running: the attacker's copy of the old cookie.
					attacker := NewClient(srv.URL, srv.Client(), httpadapter.DefaultCookieName, "attacker")
					res, err := attacker.Do(ctx, http.MethodGet, "/read", nil, planted)
					if err != nil {
						t.Fatal(err)
					}
					if res.State.Present {
						t.Errorf("during the login, the old cookie still names the session: %+v", res.State)
					}
					close(proceed)
					lr := <-done
					if lr.err != nil {
						t.Fatalf("login: %v", lr.err)
					}
					if lr.res.Cookie == "" || lr.res.Cookie == planted {
						t.Fatalf("login: no new cookie (got %q)", lr.res.Cookie)
					}
					res, err = attacker.Do(ctx, http.MethodGet, "/read", nil, planted)
					if err != nil {
						t.Fatal(err)
					}
					if res.State.Present {
						t.Errorf("after the login, the old cookie still names the session: %+v", res.State)
					}
					// The victim's new cookie has the login and the old data.
					res, err = victim.Do(ctx, http.MethodGet, "/read", nil, lr.res.Cookie)
					if err != nil {
						t.Fatal(err)
					}
					if !res.State.Present || res.State.Client != "victim" {
						t.Errorf("the new cookie lost the session: %+v", res.State)
					}
				})
			}
		})
	}
}

package bunstoretests

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/syncbuf"
)

// state is what testApp answers: the session's counter and user.
type state struct {
	Present bool   `json:"present"`
	N       int    `json:"n"`
	User    string `json:"user"`
	Error   string `json:"error"`
}

// testApp serves GET / (read the session) and POST / (increment its counter
// and, with ?user=U, bind it to U). A session error is the handler's own
// 500, so a test that wants no 500 sees every failure.
func testApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		sess := httpadapter.FromContext(ctx)
		fail := func(err error) {
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(state{Error: err.Error()})
		}
		if r.Method == http.MethodPost {
			if _, err := core.Update(ctx, sess, "n", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
				fail(err)
				return
			}
			if u := r.URL.Query().Get("user"); u != "" {
				if err := sess.SetUser(ctx, u); err != nil {
					fail(err)
					return
				}
			}
		}
		var st state
		var err error
		st.N, st.Present, err = core.Get[int](ctx, sess, "n")
		if err == nil {
			st.User, err = sess.User(ctx)
		}
		if err != nil {
			fail(err)
			return
		}
		json.NewEncoder(w).Encode(st)
	})
}

// noSockets is true where a test cannot listen or dial (wasip1, js): there
// the rig calls the handler in-process instead of over a connection.
const noSockets = runtime.GOOS == "wasip1" || runtime.GOOS == "js"

// httpRig is a real HTTP server running the middleware on a bunstore Store.
type httpRig struct {
	t       *testing.T
	srv     *httptest.Server // nil where there are no sockets
	handler http.Handler
	logs    *syncbuf.Buffer
}

func newHTTPRig(t *testing.T, s *bunstore.Store, opts ...httpadapter.Option) *httpRig {
	t.Helper()
	logs := &syncbuf.Buffer{}
	opts = append([]httpadapter.Option{httpadapter.WithSecure(false), httpadapter.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}, opts...)
	m, err := httpadapter.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h := &httpRig{t: t, handler: m.Middleware(testApp()), logs: logs}
	if !noSockets {
		h.srv = httptest.NewServer(h.handler)
		t.Cleanup(h.srv.Close)
	}
	return h
}

// reply is one response: status, decoded body and the session cookie it
// set, if any.
type reply struct {
	code    int
	st      state
	cookie  *http.Cookie // nil: no Set-Cookie for the session
	rawBody string
}

// do sends method / with the cookie value (none if "") and query.
func (h *httpRig) do(method, cookie, query string) reply {
	h.t.Helper()
	url := "http://example.test/" + query
	if h.srv != nil {
		url = h.srv.URL + "/" + query
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", "id="+cookie)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var resp *http.Response
	if h.srv != nil {
		resp, err = h.srv.Client().Do(req.WithContext(ctx))
		if err != nil {
			h.t.Fatalf("%s %s: %v (did the server die?)", method, query, err)
		}
	} else {
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req.WithContext(ctx))
		resp = rec.Result()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, rawBody: string(body)}
	_ = json.Unmarshal(body, &r.st)
	for _, c := range resp.Cookies() {
		if c.Name == "id" {
			r.cookie = c
		}
	}
	return r
}

func (r reply) removed() bool {
	return r.cookie != nil && (r.cookie.MaxAge < 0 || r.cookie.Value == "")
}

func (r reply) String() string {
	var b strings.Builder
	b.WriteString(http.StatusText(r.code))
	b.WriteString(" " + strings.TrimSpace(r.rawBody))
	if r.cookie != nil {
		b.WriteString(" Set-Cookie: " + r.cookie.String())
	}
	return b.String()
}

// cookieID is the store id of a plain-mode cookie value.
func cookieID(t testing.TB, value string) core.ID {
	t.Helper()
	tok, err := core.ParseToken(value)
	if err != nil {
		t.Fatalf("cookie %q: %v", value, err)
	}
	return tok.ID()
}

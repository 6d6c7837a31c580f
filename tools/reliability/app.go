package reliability

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// State is what the workload application answers: the session's contents
// after the request's action. A client checks it against what it expects.
type State struct {
	// Present reports whether the request found a session holding a client.
	Present bool `json:"present"`
	// Client is the client-id the session holds ("" for none).
	Client string `json:"client"`
	// Counter is the session's counter.
	Counter int64 `json:"counter"`
	// Keys holds the session's other keys ("k..." keys set by /set).
	Keys map[string]string `json:"keys,omitempty"`
}

// StatusStoreFailed is the status the application answers when a session
// call inside the handler (a load) fails. The middleware's error handler
// answers failures of the final save; the tests give it another 5xx.
const StatusStoreFailed = http.StatusServiceUnavailable

// App returns the workload application; wrap it with a Manager's Middleware.
// Every route answers the session's State as JSON after its action:
//
//	GET  /read                the session as it is
//	POST /init?client=C       start a session for client C (counter 0) if there is none
//	POST /incr                counter = counter + 1 (core.Update: atomic)
//	POST /set?k=K&v=V         set key K (which must start with "k") to V
//	POST /cycle               CycleID: new token, same data
//	POST /flush               Flush: delete the session
//
// A failed session call is logged with slog's default logger and answers
// StatusStoreFailed (the error is not in the body).
func App() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		s := httpadapter.FromContext(ctx)
		if s == nil {
			http.Error(w, "no session middleware", http.StatusInternalServerError)
			return
		}
		fail := func(err error) {
			slog.ErrorContext(ctx, "app: a session call failed", "path", r.URL.Path, "id", s.ID(), "error", err)
			http.Error(w, "session store unavailable", StatusStoreFailed)
		}
		var err error
		q := r.URL.Query()
		switch r.URL.Path {
		case "/read":
		case "/init":
			var c string
			var ok bool
			if ok, err = s.Get(ctx, "client", &c); err == nil && !ok {
				if err = s.Insert(ctx, "client", q.Get("client")); err == nil {
					err = s.Insert(ctx, "counter", int64(0))
				}
			}
		case "/incr":
			_, err = core.Update(ctx, s, "counter", func(n int64, _ bool) (int64, error) { return n + 1, nil })
		case "/set":
			k := q.Get("k")
			if !strings.HasPrefix(k, "k") {
				http.Error(w, "keys must start with k", http.StatusBadRequest)
				return
			}
			err = s.Insert(ctx, k, q.Get("v"))
		case "/cycle":
			err = s.CycleID(ctx)
		case "/flush":
			err = s.Flush(ctx)
		default:
			http.NotFound(w, r)
			return
		}
		if err != nil {
			fail(err)
			return
		}
		st, err := readState(ctx, s)
		if err != nil {
			fail(err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
}

func readState(ctx context.Context, s *core.Session) (State, error) {
	var st State
	keys, err := s.Keys(ctx)
	if err != nil {
		return st, err
	}
	for _, k := range keys {
		switch {
		case k == "client":
			if _, err := s.Get(ctx, k, &st.Client); err != nil {
				return st, err
			}
			st.Present = true
		case k == "counter":
			if _, err := s.Get(ctx, k, &st.Counter); err != nil {
				return st, err
			}
		default:
			var v string
			if _, err := s.Get(ctx, k, &v); err != nil {
				return st, err
			}
			if st.Keys == nil {
				st.Keys = map[string]string{}
			}
			st.Keys[k] = v
		}
	}
	return st, nil
}

// Deadline gives every request served by h a context that ends after d, as
// a server with a request budget would (http.TimeoutHandler does the same and
// also answers 503 itself). Store calls honour it, so a request never hangs
// past it even when the database does.
func Deadline(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }

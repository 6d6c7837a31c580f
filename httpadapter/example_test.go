package httpadapter_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
)

// A visit counter: the first request creates the session and sets the
// cookie; the next one, sending the cookie back, reads and updates it.
func Example() {
	sessions, err := httpadapter.New(core.NewMemoryStore(),
		httpadapter.WithExpiry(core.OnInactivity(30*time.Minute)),
	)
	if err != nil {
		panic(err)
	}
	counter := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := httpadapter.FromContext(r.Context())
		n, _, err := core.Get[int](r.Context(), s, "visits")
		if err == nil {
			err = s.Insert(r.Context(), "visits", n+1)
		}
		if err != nil {
			http.Error(w, "session error", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d", n+1)
	})
	h := sessions.Middleware(counter)

	first := httptest.NewRecorder()
	h.ServeHTTP(first, httptest.NewRequest(http.MethodGet, "/", nil))
	cookie := first.Result().Cookies()[0]
	fmt.Println(first.Body, "| cookie", cookie.Name, "Max-Age", cookie.MaxAge, "| Vary:", first.Header().Get("Vary"))

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(cookie)
	second := httptest.NewRecorder()
	h.ServeHTTP(second, req)
	fmt.Println(second.Body)
	// Output:
	// visit 1 | cookie id Max-Age 1800 | Vary: Cookie
	// visit 2
}

// Logging out: Flush deletes the session and the response removes the cookie.
func ExampleManager_Middleware_logout() {
	store := core.NewMemoryStore()
	sessions, err := httpadapter.New(store)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := httpadapter.FromContext(r.Context())
		// A new id on privilege change defeats session fixation.
		if err := s.CycleID(r.Context()); err != nil {
			http.Error(w, "session error", http.StatusInternalServerError)
			return
		}
		if err := s.Insert(r.Context(), "user", "ada"); err != nil {
			http.Error(w, "session error", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := httpadapter.FromContext(r.Context()).Flush(r.Context()); err != nil {
			http.Error(w, "session error", http.StatusInternalServerError)
		}
	})
	h := sessions.Middleware(mux)

	login := httptest.NewRecorder()
	h.ServeHTTP(login, httptest.NewRequest(http.MethodPost, "/login", nil))
	fmt.Println("sessions after login:", store.Len())

	req := httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.AddCookie(login.Result().Cookies()[0])
	logout := httptest.NewRecorder()
	h.ServeHTTP(logout, req)
	io.Copy(io.Discard, logout.Body)
	fmt.Println("sessions after logout:", store.Len())
	fmt.Println(logout.Header().Get("Set-Cookie"))
	// Output:
	// sessions after login: 1
	// sessions after logout: 0
	// id=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Strict
}

// Signed cookies: the first key signs, every key verifies, so a new key can
// be rolled out while cookies signed with the old one keep working.
func ExampleWithSignedKeys() {
	newKey := []byte("0123456789abcdef0123456789abcdef") // use at least 32 random bytes from a secret store
	oldKey := []byte("fedcba9876543210fedcba9876543210")
	_, err := httpadapter.New(core.NewMemoryStore(), httpadapter.WithSignedKeys(newKey, oldKey))
	fmt.Println(err)
	_, err = httpadapter.New(core.NewMemoryStore(), httpadapter.WithSignedKeys([]byte("too short")))
	fmt.Println(err)
	// Output:
	// <nil>
	// httpadapter: signing key 0 is 9 bytes; it must be at least 32 bytes of random data (e.g. from crypto/rand)
}

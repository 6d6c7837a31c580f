package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/httpadapter"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
)

// cookieModes are the middleware's cookie modes, each with a fresh key.
func cookieModes(t testing.TB) map[string][]httpadapter.Option {
	key := func() []byte {
		k := make([]byte, httpadapter.KeyLen)
		_, _ = rand.Read(k)
		return k
	}
	return map[string][]httpadapter.Option{
		"plain":   nil,
		"signed":  {httpadapter.WithSignedKeys(key(), key())},
		"private": {httpadapter.WithPrivateKeys(key(), key())},
	}
}

// serve runs one request through h in process and decodes App's answer.
func serve(t testing.TB, h http.Handler, method, target, cookieHeader string) (*httptest.ResponseRecorder, State) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if cookieHeader != "" {
		req.Header["Cookie"] = []string{cookieHeader}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var st State
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatalf("decoding %q: %v", rec.Body.String(), err)
		}
	}
	return rec, st
}

// sessionCookie returns the value of the session cookie rec sets ("" if none).
func sessionCookie(rec *httptest.ResponseRecorder) (value string, removed bool) {
	for _, c := range rec.Result().Cookies() {
		if c.Name == httpadapter.DefaultCookieName {
			return c.Value, c.MaxAge < 0 || c.Value == ""
		}
	}
	return "", false
}

// FuzzCookieHeader sends arbitrary Cookie headers through the middleware in
// plain, signed and private mode. Whatever the header, the answer is 200
// (never a 500 or a panic), it shows no session but the one whose valid
// cookie it carries, and the only cookie it may set is a removal cookie.
func FuzzCookieHeader(f *testing.F) {
	type setup struct {
		h     http.Handler
		valid string
	}
	setups := map[string]setup{}
	for mode, opts := range cookieModes(f) {
		m, err := httpadapter.New(core.NewMemoryStore(), opts...)
		if err != nil {
			f.Fatal(err)
		}
		h := m.Middleware(App())
		rec, _ := serve(f, h, http.MethodPost, "/init?client=owner", "")
		valid, _ := sessionCookie(rec)
		if valid == "" {
			f.Fatalf("%s: no cookie", mode)
		}
		setups[mode] = setup{h, valid}
		f.Add(mode, "id="+valid)
		f.Add(mode, "id="+valid+"x")
		f.Add(mode, "id="+valid[:len(valid)-1])
		f.Add(mode, "id="+strings.ToUpper(valid))
		f.Add(mode, "id=\""+valid+"\"")
		f.Add(mode, "a=b; id=%41"+valid[1:]+"; id="+valid)
		f.Add(mode, strings.Repeat("id=x; ", 20)+"id="+valid)
	}
	for _, s := range []string{"", "id=", "id", "=", ";;;", "id=\x00", "id=\xff\xfe", "id=%zz", "id=" + strings.Repeat("A", 22),
		"id=AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "id=" + strings.Repeat("%", 500)} {
		for mode := range setups {
			f.Add(mode, s)
		}
	}
	f.Fuzz(func(t *testing.T, mode, header string) {
		s, ok := setups[mode]
		if !ok {
			t.Skip()
		}
		rec, st := serve(t, s.h, http.MethodGet, "/read", header)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: Cookie %q: status %d", mode, header, rec.Code)
		}
		norm := strings.ReplaceAll(header, `"`, "")
		if u, err := url.PathUnescape(norm); err == nil {
			norm = u
		}
		if st.Present && (st.Client != "owner" || !strings.Contains(norm, s.valid) && !strings.Contains(header, "%")) {
			t.Fatalf("%s: Cookie %q shows a session: %+v", mode, header, st)
		}
		if v, removed := sessionCookie(rec); v != "" && !removed {
			t.Fatalf("%s: Cookie %q: a read set a cookie %q", mode, header, v)
		}
	})
}

// FuzzMsgPackDecodeMap: DecodeMap never panics; what it rejects wraps
// core.ErrCorruptRecord; what it accepts re-encodes to the same map.
func FuzzMsgPackDecodeMap(f *testing.F) {
	good, err := bunstore.MsgPack.EncodeMap(map[string][]byte{"a": mustMsgPack(f, 1), "b": mustMsgPack(f, "x"), "": mustMsgPack(f, []int{1, 2})})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for i := range good {
		f.Add(good[:i])
		b := bytes.Clone(good)
		b[i] ^= 0xff
		f.Add(b)
	}
	for _, s := range []string{"", "\x80", "\x81", "\x81\xa1a", "\xdf\xff\xff\xff\xff", "\xc1", "\x90", "\x81\x01\x02", "\x81\xa1a\xdb\xff\xff\xff\xff", "\xde\xff\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := bunstore.MsgPack.DecodeMap(b)
		if err != nil {
			if !errors.Is(err, core.ErrCorruptRecord) {
				t.Fatalf("DecodeMap(%x): error %v does not wrap core.ErrCorruptRecord", b, err)
			}
			return
		}
		again, err := bunstore.MsgPack.EncodeMap(m)
		if err != nil {
			t.Fatalf("EncodeMap of a decoded map: %v", err)
		}
		m2, err := bunstore.MsgPack.DecodeMap(again)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("re-decoding: %v, %d keys, want %d", err, len(m2), len(m))
		}
		for k, v := range m {
			if !bytes.Equal(m2[k], v) {
				t.Fatalf("key %q: %x after a round trip, want %x", k, m2[k], v)
			}
		}
	})
}

func mustMsgPack(t testing.TB, v any) []byte {
	b, err := bunstore.MsgPack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var plainIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// FuzzIdentifier: bunstore.New with any schema and table name never panics,
// accepts exactly the plain identifiers of at most 63 bytes, and rejects the
// rest with ErrInvalidName, on every dialect. (New runs no query.)
func FuzzIdentifier(f *testing.F) {
	pg, _ := sql.Open("pgx", dbtest.PostgresURL())
	my, _ := sql.Open("mysql", dbtest.MySQLDSN(f))
	f.Cleanup(func() { pg.Close(); my.Close() })
	dbs := []*bun.DB{bun.NewDB(pg, pgdialect.New()), bun.NewDB(my, mysqldialect.New()), bun.NewDB(my, sqlitedialect.New())}
	for _, s := range []string{"session", "tower_sessions", "_x", "a1", "1a", "", "a-b", "a.b", `a"b`, "a`b", "a b", "a;drop table x", "é", "a\x00", strings.Repeat("a", 63), strings.Repeat("a", 64), "SELECT", "ｓ"} {
		f.Add(s, "session")
		f.Add("tower_sessions", s)
	}
	f.Fuzz(func(t *testing.T, schema, table string) {
		for _, db := range dbs {
			var opts []bunstore.Option
			sqlite := db.Dialect().Name().String() == "sqlite"
			if !sqlite {
				opts = append(opts, bunstore.WithSchemaName(schema))
			}
			opts = append(opts, bunstore.WithTableName(table))
			s, err := bunstore.New(db, opts...)
			wantOK := plainIdent.MatchString(table) && (sqlite || plainIdent.MatchString(schema))
			if err != nil {
				if !errors.Is(err, bunstore.ErrInvalidName) {
					t.Fatalf("%s: New(%q, %q): %v does not wrap ErrInvalidName", db.Dialect().Name(), schema, table, err)
				}
				if wantOK {
					t.Fatalf("%s: New(%q, %q) rejected plain identifiers: %v", db.Dialect().Name(), schema, table, err)
				}
				continue
			}
			s.Close()
			if !wantOK {
				t.Fatalf("%s: New(%q, %q) accepted a name that is not a plain identifier", db.Dialect().Name(), schema, table)
			}
		}
	})
}

// TestOversizedCookies: a 16 KiB cookie and thousands of cookies in one
// header are answered quickly, with no session and never a 500, in every
// cookie mode, on a real store.
func TestOversizedCookies(t *testing.T) {
	store := openBackend(t, "postgres")
	valid := func(h http.Handler) string {
		rec, _ := serve(t, h, http.MethodPost, "/init?client=owner", "")
		v, _ := sessionCookie(rec)
		return v
	}
	for mode, opts := range cookieModes(t) {
		m, err := httpadapter.New(store, opts...)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(m.Middleware(App()))
		defer srv.Close()
		v := valid(m.Middleware(App()))
		headers := map[string]string{
			"16 KiB value":                     "id=" + strings.Repeat("a", 16<<10),
			"16 KiB of percent escapes":        "id=" + strings.Repeat("%41", 16<<10/3),
			"5000 session cookies":             strings.Repeat("id=AAAAAAAAAAAAAAAAAAAAAA; ", 5000),
			"5000 session cookies, then valid": strings.Repeat("id=garbage; ", 5000) + "id=" + v,
			"10000 other cookies":              strings.Repeat("x=y; ", 10000),
		}
		for name, h := range headers {
			// The fastest of three answers: one slow answer on a busy
			// machine (CI runs packages in parallel, under -race) says
			// nothing about the work a header costs.
			took := time.Hour
			for range 3 {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/read", nil)
				req.Header.Set("Cookie", h)
				start := time.Now()
				resp, err := srv.Client().Do(req)
				took = min(took, time.Since(start))
				if err != nil {
					t.Fatalf("%s, %s: %v", mode, name, err)
				}
				var st State
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || st.Present {
					t.Errorf("%s, %s (%d bytes): status %d, session %+v", mode, name, len(h), resp.StatusCode, st)
				}
			}
			t.Logf("%s, %s (%d bytes): answered in %v", mode, name, len(h), took)
			if took > 100*time.Millisecond {
				t.Errorf("%s, %s (%d bytes): answered in %v at best, want < 100ms", mode, name, len(h), took)
			}
		}
	}
}

// TestCorruptRowThroughMiddleware: a row whose data is not a valid record
// (written directly with SQL) is "no session" through the middleware: a 200
// with no data and a removal cookie, never a 500, on every backend.
func TestCorruptRowThroughMiddleware(t *testing.T) {
	for _, name := range soakBackends {
		t.Run(name, func(t *testing.T) {
			store, db := openBackendDB(t, name)
			m, err := httpadapter.New(store, httpadapter.WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			h := m.Middleware(App())
			for _, junk := range [][]byte{{}, {0xc1}, []byte("not msgpack"), {0x81, 0xa1, 'a'}, {0xdf, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{0x91}, 10000)} {
				rec, _ := serve(t, h, http.MethodPost, "/init?client=c", "")
				cookie, _ := sessionCookie(rec)
				tok, err := core.ParseToken(cookie)
				if err != nil {
					t.Fatal(err)
				}
				res, err := db.NewUpdate().TableExpr("?", tableName(store)).Set("data = ?", junk).Where("id = ?", string(tok.ID())).Exec(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := res.RowsAffected(); n != 1 {
					t.Fatalf("corrupting the row: %d rows", n)
				}
				rec, st := serve(t, h, http.MethodGet, "/read", "id="+cookie)
				if rec.Code != http.StatusOK || st.Present {
					t.Errorf("corrupt data %x: status %d, session %+v; want 200 and no session", junk[:min(len(junk), 8)], rec.Code, st)
				}
				if _, removed := sessionCookie(rec); !removed {
					t.Errorf("corrupt data %x: no removal cookie", junk[:min(len(junk), 8)])
				}
				// Writing to it starts afresh instead of failing.
				rec, st = serve(t, h, http.MethodPost, "/init?client=d", "id="+cookie)
				if rec.Code != http.StatusOK || st.Client != "d" {
					t.Errorf("corrupt data %x: a new session over it: status %d, %+v", junk[:min(len(junk), 8)], rec.Code, st)
				}
			}
		})
	}
}

// TestAwkwardValues: keys and values with NUL bytes and invalid UTF-8, and a
// 10 MiB value, round-trip on every backend (or fail with a clear error at
// Insert or Commit, never silently).
func TestAwkwardValues(t *testing.T) {
	big := make([]byte, 10<<20)
	_, _ = rand.Read(big)
	cases := []struct {
		name string
		key  string
		val  any
	}{
		{"NUL in key and value", "k\x00ey", "va\x00lue"},
		{"invalid UTF-8 key and value", "k\xff\xfe", "\xc3\x28\xa0\xa1"},
		{"invalid UTF-8 as bytes", "bytes", []byte{0xff, 0x00, 0xfe}},
		{"empty key", "", "empty"},
		{"10 MiB value", "big", big},
	}
	for _, name := range soakBackends {
		t.Run(name, func(t *testing.T) {
			store := openBackend(t, name)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for _, c := range cases {
				s := core.NewSession(store, "", nil)
				if err := s.Insert(ctx, c.key, c.val); err != nil {
					t.Logf("%s: Insert refused: %v", c.name, err)
					continue
				}
				if _, err := s.Commit(ctx); err != nil {
					if err.Error() == "" {
						t.Errorf("%s: Commit failed with an empty error", c.name)
					}
					t.Logf("%s: Commit refused: %v", c.name, err)
					continue
				}
				back := core.NewSession(store, s.Token().String(), nil)
				switch want := c.val.(type) {
				case string:
					var got string
					if ok, err := back.Get(ctx, c.key, &got); err != nil || !ok || got != want {
						t.Errorf("%s: got %q, %v, %v; want %q", c.name, got, ok, err, want)
					}
				case []byte:
					var got []byte
					if ok, err := back.Get(ctx, c.key, &got); err != nil || !ok || !bytes.Equal(got, want) {
						t.Errorf("%s: got %d bytes, %v, %v; want %d bytes", c.name, len(got), ok, err, len(want))
					}
				}
			}
		})
	}
}

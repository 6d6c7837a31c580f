package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/vmihailenco/msgpack/v5"
)

// handmade is sqlsessions' work on a counter request written by hand on
// database/sql, with no session library: what the floor does, plus what
// sqlsessions does for its promises, each the plainest way:
//
//   - The cookie holds a 128-bit token; the row is keyed by its SHA-256
//     (a leaked table holds no cookie).
//   - The row is sqlsessions' row, in a table of its own made by bunstore's
//     Migrate: data (MessagePack), expiry, version, creation time, user.
//     handmade runs bunstore's three statements, written out: a SELECT of
//     the five columns, an UPDATE conditional on the version read (no lost
//     write), an INSERT of a new row.
//   - The counter goes through MessagePack both ways.
//   - Every write sends the cookie again with its Max-Age (expiry on
//     inactivity), and the headers that keep shared caches from storing it.
//   - A write that meets a concurrent one reads the session again and
//     increments the newer count (core.Update's promise), with core's bound
//     on retries (then 409, an error).
//
// It does not do what the library does beyond that: no corrupt-row checks,
// no user or creation-time bookkeeping, no context value, no response
// wrapper. So the floor -> handmade step is what the promises cost, and
// handmade -> sqlsessions what the library adds.
type handmade struct {
	load, save, create stmt
	arg                func(time.Time) any // time column argument
	ttl                time.Duration
	maxAge             int          // the cookie's Max-Age, in seconds
	conflicts          atomic.Int64 // writes that met a concurrent one (tests)
}

// handmadeTable is handmade's table name.
const handmadeTable = "handmade"

// counterData is the MessagePack of a session holding counter n, as
// sqlsessions' codec writes it: a map of one key.
func counterData(n int) ([]byte, error) {
	return msgpack.Marshal(map[string]int{"counter": n})
}

// handmadeID is the row key of token: the first 128 bits of its SHA-256, in
// base64.
func handmadeID(token []byte) string {
	sum := sha256.Sum256(token)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func (h *handmade) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := time.Now()
	var (
		token [16]byte
		id    string
		n     int
	)
	if c, err := r.Cookie(floorCookie); err == nil && len(c.Value) == 22 {
		if k, err := base64.RawURLEncoding.Strict().Decode(token[:], []byte(c.Value)); err == nil && k == len(token) {
			id = handmadeID(token[:])
		}
	}
	for attempt := 1; ; attempt++ {
		var (
			version int64
			err     error
		)
		if id != "" {
			var found bool
			if n, version, found, err = h.read(ctx, id, now); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if !found {
				id = ""
			}
		}
		if r.URL.Path == pathRead {
			break
		}
		n++
		rows, err := h.write(ctx, &token, &id, n, version, now)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if rows > 0 {
			http.SetCookie(w, &http.Cookie{Name: floorCookie, Value: base64.RawURLEncoding.EncodeToString(token[:]), Path: "/",
				MaxAge: h.maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode})
			w.Header().Set("Vary", "Cookie")
			w.Header().Set("Cache-Control", "private")
			break
		}
		// Another request wrote the session since it was read: read it
		// again and increment the newer count, as core.Update does.
		h.conflicts.Add(1)
		if attempt == handmadeAttempts {
			http.Error(w, "conflict", http.StatusConflict)
			return
		}
	}
	writeCount(w, n)
}

// handmadeAttempts bounds handmade's read-increment-write rounds of one
// request as core bounds a Commit's: a few sessions under many connections
// (the tests' runs) meet several conflicts in a row.
const handmadeAttempts = core.DefaultMaxConflictRetries + 1

// read returns session id's counter and version, or found false if it is
// missing or expired at now.
func (h *handmade) read(ctx context.Context, id string, now time.Time) (n int, version int64, found bool, err error) {
	var (
		data            []byte
		expiry, created anyScanner
		user            sql.NullString
	)
	err = h.load.row(ctx, id, h.arg(now)).Scan(&data, &expiry, &version, &created, &user)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	var m map[string]int
	if err := msgpack.Unmarshal(data, &m); err != nil {
		return 0, 0, false, err
	}
	return m["counter"], version, true, nil
}

// write saves counter n for session *id at version, or creates a session
// (a new *token and *id) if *id is "", and returns the rows written: 0 for
// a conflict.
func (h *handmade) write(ctx context.Context, token *[16]byte, id *string, n int, version int64, now time.Time) (int64, error) {
	data, err := counterData(n)
	if err != nil {
		return 0, err
	}
	expiry := h.arg(now.Add(h.ttl))
	var res sql.Result
	if *id == "" {
		_, _ = rand.Read(token[:])
		*id = handmadeID(token[:])
		res, err = h.create.exec(ctx, *id, data, expiry, h.arg(now), nil)
	} else {
		res, err = h.save.exec(ctx, data, expiry, nil, *id, version)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// stmt runs one SQL statement: prepared on the pool, or with its SQL text
// (PgBouncer in transaction mode hands each statement to any server
// connection, where a prepared statement may not exist; pgx's exec mode
// then runs the text as an unnamed statement).
type stmt struct {
	db    *sql.DB
	query string
	ps    *sql.Stmt // nil: the text goes with every call
}

// prepareStmt returns query's stmt on db, prepared unless text.
func prepareStmt(ctx context.Context, db *sql.DB, query string, text bool) (stmt, error) {
	s := stmt{db: db, query: query}
	if !text {
		ps, err := db.PrepareContext(ctx, query)
		if err != nil {
			return stmt{}, err
		}
		s.ps = ps
	}
	return s, nil
}

func (s stmt) row(ctx context.Context, args ...any) *sql.Row {
	if s.ps != nil {
		return s.ps.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, s.query, args...)
}

func (s stmt) exec(ctx context.Context, args ...any) (sql.Result, error) {
	if s.ps != nil {
		return s.ps.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, s.query, args...)
}

func (s stmt) close() error {
	if s.ps == nil {
		return nil
	}
	return s.ps.Close()
}

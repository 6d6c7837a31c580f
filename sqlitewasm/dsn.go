package sqlitewasm

import (
	"fmt"
	"github.com/sqlsessions/sqlsessions/sqlitewasm/internal/memdb"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// target is a parsed data source name.
type target struct {
	memory bool       // a private in-memory database (memdb VFS)
	path   string     // file path (or memdb name) when !memory; empty for memory
	query  url.Values // URI parameters to pass through to SQLite and the driver
	raw    bool       // path is a memdb URI path given by the caller; no file defaults
}

// parseDSN understands sqlx's sqlite: URLs, SQLite file: URIs and plain paths.
func parseDSN(dsn string) (target, error) {
	s := strings.TrimSpace(dsn)
	if s == "" {
		return target{}, fmt.Errorf("%w: empty; use sqlite::memory: or a file path", ErrUnsupportedDSN)
	}
	switch {
	case strings.HasPrefix(s, "sqlite://"):
		return parseRest(dsn, s[len("sqlite://"):])
	case strings.HasPrefix(s, "sqlite:"):
		return parseRest(dsn, s[len("sqlite:"):])
	case strings.HasPrefix(s, "file:"):
		u, err := url.Parse(s)
		if err != nil {
			return target{}, fmt.Errorf("%w: %q: %v", ErrUnsupportedDSN, dsn, err)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return target{}, fmt.Errorf("%w: %q: %v", ErrUnsupportedDSN, dsn, err)
		}
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if u.Host != "" && u.Host != "localhost" {
			return target{}, fmt.Errorf("%w: %q: file URI authority must be empty or localhost", ErrUnsupportedDSN, dsn)
		}
		return finish(dsn, p, q)
	}
	if i := strings.Index(s, "://"); i > 0 && !strings.ContainsAny(s[:i], `/\`) && i > 1 {
		return target{}, fmt.Errorf("%w: %q is a %s URL, not SQLite", ErrUnsupportedDSN, redact(s), s[:i])
	}
	if s == ":memory:" {
		return target{memory: true, query: url.Values{}}, nil
	}
	// A plain path: taken literally, no query string.
	return target{path: s, query: url.Values{}}, nil
}

// parseRest parses what follows "sqlite:" or "sqlite://": a path (percent
// encoded, as in sqlx) and an optional query of SQLite URI parameters.
func parseRest(dsn, rest string) (target, error) {
	p, rawQuery, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return target{}, fmt.Errorf("%w: %q: %v", ErrUnsupportedDSN, dsn, err)
	}
	p, err = url.PathUnescape(p)
	if err != nil {
		return target{}, fmt.Errorf("%w: %q: %v", ErrUnsupportedDSN, dsn, err)
	}
	return finish(dsn, p, q)
}

func finish(dsn, p string, q url.Values) (target, error) {
	if p == ":memory:" || q.Get("mode") == "memory" {
		q.Del("mode")
		q.Del("cache")
		return target{memory: true, query: q}, nil
	}
	if q.Get("vfs") == "memdb" {
		// Served by sqlitewasm's copy of ncruces' memdb VFS (see
		// internal/memdb): a name beginning with "/" is shared by the pool.
		q.Set("vfs", memdb.VFSName)
		return target{path: p, query: q, raw: true}, nil
	}
	if p == "" {
		return target{}, fmt.Errorf("%w: %q names no file; use sqlite::memory: or sqlite://path/to/file.db", ErrUnsupportedDSN, dsn)
	}
	return target{path: p, query: q}, nil
}

// uri builds the driver's file: URI with the defaults applied. It reports
// whether the pool must be limited to one connection.
func (t target) uri(cfg *config, memName string, fileLocking, sharedMemory bool) (uri string, single bool) {
	q := url.Values{}
	var user []string
	for k, vs := range t.query {
		if k == "_pragma" {
			user = append(user, vs...)
			continue
		}
		q[k] = append([]string(nil), vs...)
	}
	user = append(user, cfg.pragmas...)

	has := func(name string) bool {
		for _, p := range user {
			if pragmaName(p) == name {
				return true
			}
		}
		return false
	}

	// Order matters to the driver: encryption keys first, then busy_timeout,
	// then locking mode, then everything else.
	var pragmas []string
	for _, p := range user {
		switch pragmaName(p) {
		case "key", "hexkey", "textkey":
			pragmas = append(pragmas, p)
		}
	}
	pragmas = append(pragmas, "busy_timeout("+strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10)+")")

	file := !t.memory && !t.raw
	wal := file
	switch {
	case file && !fileLocking:
		// No locks: only one connection may touch the file, and SQLite
		// refuses WAL under nolock, so the rollback journal stays.
		q.Set("nolock", "1")
		single = true
		wal = false
	case file && !sharedMemory && !has("locking_mode"):
		// WAL without shared memory needs EXCLUSIVE locking (one connection).
		pragmas = append(pragmas, "locking_mode(exclusive)")
		single = true
	}
	for _, p := range user {
		switch pragmaName(p) {
		case "key", "hexkey", "textkey":
		default:
			pragmas = append(pragmas, p)
		}
	}
	if file {
		if wal && !has("journal_mode") {
			pragmas = append(pragmas, "journal_mode(wal)")
		}
		if !has("synchronous") {
			pragmas = append(pragmas, "synchronous(normal)")
		}
		if !has("journal_size_limit") {
			pragmas = append(pragmas, "journal_size_limit("+strconv.Itoa(DefaultJournalSizeLimit)+")")
		}
	}
	q["_pragma"] = pragmas
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}

	u := url.URL{Scheme: "file", OmitHost: true, RawQuery: q.Encode()}
	switch {
	case t.memory:
		q.Set("vfs", memdb.VFSName)
		u.RawQuery = q.Encode()
		u.Path = "/" + memName
	default:
		p := filepath.ToSlash(t.path)
		if filepath.IsAbs(t.path) && !strings.HasPrefix(p, "/") {
			p = "/" + p // Windows drive letter: file:///C:/...
		}
		u.Path = p
	}
	return u.String(), single
}

// pragmaName returns the lower-cased name of a "_pragma" value such as
// "journal_mode(wal)" or "synchronous = normal".
func pragmaName(p string) string {
	p = strings.TrimSpace(p)
	if i := strings.IndexAny(p, "(= "); i >= 0 {
		p = p[:i]
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 { // schema.pragma
		p = p[i+1:]
	}
	return strings.ToLower(p)
}

// redact hides a password in a URL-shaped string for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

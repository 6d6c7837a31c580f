// Package core is the dependency-free heart of sqlsessions: session tokens and
// store keys, records, expiry, value codecs, the Store contract that every
// backend implements, the per-request Session handle, an in-memory store and a
// caching store.
//
// A request's session is lazy: creating a Session costs nothing, the first
// read loads the record with one store call, and Commit writes it back with
// one more only when something changed. Concurrent requests on one session
// never lose each other's writes to different keys: Commit saves conditionally
// on the version it loaded and, on a conflict, reloads and replays only the
// changes this request made.
//
// The cookie carries a random Token; stores only ever see its SHA-256-derived
// ID, so a leaked session table cannot be used to hijack sessions.
//
// Most applications use core through the httpadapter middleware and a SQL
// store from bunstore; core alone is enough for tests and single-process
// programs (see MemoryStore).
package core

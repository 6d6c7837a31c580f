// Package pgnotify keeps the caches of several processes that share one
// PostgreSQL session table in step, through LISTEN/NOTIFY: a log-out, CycleID,
// revocation or write made by one process evicts the session from every
// other process's core.CachingStore within milliseconds, instead of within
// the cache's TTL.
//
// It has two parts. Install puts three triggers on the session table that
// NOTIFY a channel with the ids of the sessions changed: on UPDATE, one
// notification per row (a save updates one); on DELETE, one per statement,
// with the ids in batches within PostgreSQL's 8000-byte payload limit (a
// user's revoked sessions arrive together); on TRUNCATE, "*", which empties
// the caches. Rows that had already expired are left out: no cache can serve
// them, so a purge of expired sessions sends nothing. A Listener holds its
// own connection, LISTENs, and calls CachingStore.Evict for every id it
// receives.
//
//	cache := core.NewCachingStore(store, core.CachingOptions{}) // store: a bunstore.Store on PostgreSQL
//	l, err := pgnotify.New(directDSN, cache, pgnotify.Options{})
//	if err != nil { ... }
//	go l.Run(ctx) // installs the triggers, listens, reconnects; returns when ctx ends
//	sessions, err := httpadapter.New(cache)
//
// # Guarantees
//
// While the listener is listening (Listening reports it) the cache keeps
// entries for its FeedTTL (one minute by default) and a change committed by
// any process reaches it in about a millisecond plus the network's delay. The
// moment the connection is lost (a server restart, pg_terminate_backend, a
// network error) the cache returns to its TTL (one second by default) and
// the listener reconnects with backoff; once listening again it empties the
// cache, since what changed meanwhile was never reported. A connection that
// dies silently is noticed within two Options.HealthInterval (5 s by
// default), whose check also makes sure the triggers are still in place.
// No write is ever lost either way: a save built on a stale cached record
// meets a version conflict and is replayed on the current one (see
// core.CachingStore).
//
// See docs/many-instances.md in the repository for the whole picture.
//
// # Connections
//
// The listener needs a connection to PostgreSQL itself (or to a PgBouncer
// in session mode): LISTEN does not work through PgBouncer in transaction
// mode. Give it a DSN of its own; it uses one connection per process.
//
// # Cost
//
// The triggers fire for every writer, listening or not. NOTIFY makes each
// writing transaction take a database-wide lock from its commit until its
// commit record is flushed, so concurrent saves no longer share WAL flushes:
// see BENCHMARKS.md for what that costs a save here. Uninstall removes the
// triggers when the feed is no longer used.
//
// # Deletions only
//
// For sessions written often from several processes, Options.DeletesOnly
// (with InstallDeletes) keeps what matters most for security, a log-out,
// CycleID or revocation refused everywhere within milliseconds, without the
// UPDATE trigger: saves notify nobody and pay nothing for the feed, and
// the cache keeps its TTL, so a value saved elsewhere is read old for up to
// the TTL, as without a feed. Measured with two instances writing the same
// sessions (BENCHMARKS.md, "Many instances on one database"), the counter
// workload kept the throughput of a cache without a feed where the whole
// feed lost 18-41 % of it. An UPDATE trigger installed before stays until
// Uninstall.
package pgnotify

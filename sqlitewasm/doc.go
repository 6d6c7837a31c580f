// Package sqlitewasm opens an in-process SQLite database without cgo and
// returns it as a ready *bun.DB for bunstore (or any other bun code).
//
// SQLite comes from github.com/ncruces/go-sqlite3: its SQLite build is
// compiled to WebAssembly and translated to plain Go by wasm2go, so there is
// no C toolchain, no cgo and no runtime interpreter; CGO_ENABLED=0 builds
// work, and so do cross builds, including GOOS=wasip1 and GOOS=js.
//
// Open accepts the data source names the Rust seed (sqlx) accepts:
//
//	sqlite::memory:              one private in-memory database
//	sqlite://sessions.db         a file, relative to the working directory
//	sqlite:///var/lib/app/s.db   an absolute path
//	sqlite:sessions.db           the short form
//	sessions.db                  a plain path
//	file:sessions.db?mode=rwc    an SQLite URI, passed through
//
// Every database gets defaults that suit a session store:
//
//   - busy_timeout is always set (10 s unless WithBusyTimeout), so writers
//     wait for the lock instead of failing with "database is locked";
//   - write transactions begin IMMEDIATE (_txlock=immediate), so a
//     transaction that reads and then writes never dead-ends in SQLITE_BUSY;
//   - a statement stopped because its context ended fails with an error
//     that wraps the context's error (errors.Is(err, context.Canceled)) as
//     well as SQLite's: the driver alone reports only "database is locked"
//     (SQLITE_BUSY: the context ended while it waited for a lock) or
//     "interrupted" (SQLITE_INTERRUPT: it ended while the statement ran),
//     which looks like a database locked for the whole busy timeout. An
//     interrupted write may still have committed;
//   - files use journal_mode=WAL and synchronous=NORMAL: readers never block
//     the writer and a commit costs no fsync;
//   - the write-ahead log stays small under load. SQLite's automatic
//     checkpoint (after a commit that leaves wal_autocheckpoint pages, 1000
//     by default, in the log) is PASSIVE: under continuous writes it never
//     lets the log start over, so the -wal file grows for as long as the load
//     lasts and never shrinks. Open makes that
//     checkpoint a RESTART one instead, which waits at most 100 ms for the
//     last writer and the readers of the old log so that the next commit
//     writes the log from its start; the -wal file then stays near
//     wal_autocheckpoint pages plus the largest transaction (RELIABILITY.md
//     has the figures). journal_size_limit is set to
//     DefaultJournalSizeLimit (16 MiB), so a log that did grow is cut back at
//     the next rewind. A reader that keeps a transaction open holds the log:
//     nothing can rewind it meanwhile, and after a RESTART that could not
//     finish Open waits for the log to grow by 1000 more pages, then 2000,
//     and so on, before stalling writers for another try;
//   - _pragma=journal_size_limit(N) in the DSN sets another limit, and
//     _pragma=wal_autocheckpoint(N) another threshold (0 turns automatic
//     checkpoints off, Open's included, for an application that checkpoints
//     itself). On Open's connections PRAGMA wal_autocheckpoint reads 0,
//     because a WAL hook replaces SQLite's automatic checkpoint;
//   - an in-memory database is a single database shared by every pooled
//     connection (ncruces' memdb VFS, copied into sqlitewasm so that no
//     program using it links package testing, under a unique name;
//     file:/name?vfs=memdb URIs use it too), deleted when the
//     *bun.DB is closed; plain ":memory:" would give each connection its own
//     empty database;
//   - the pool holds 4 connections, all kept idle between uses, because
//     SQLite has one writer at a time and prepared statements live and die
//     with their connection.
//
// On builds without file locking (GOOS=wasip1 or GOOS=js without the
// sqlite3_dotlk build tag) a file database is opened with nolock=1, a
// rollback journal (SQLite refuses WAL without locks) and a pool of one
// connection: the only safe configuration there, for a single process. Build
// with -tags sqlite3_dotlk to get dot-file locks, WAL through in-process
// shared memory and a normal pool on those platforms.
package sqlitewasm

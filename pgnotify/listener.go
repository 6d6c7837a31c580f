package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sqlsessions/sqlsessions/core"
)

// Defaults of Options.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultMaxBackoff     = 5 * time.Second
	// DefaultApplicationName is the application_name the listener's
	// connection reports (pg_stat_activity) unless its DSN sets one.
	DefaultApplicationName = "sqlsessions-pgnotify"
)

// connectTimeout bounds a connection attempt whose DSN sets no
// connect_timeout.
const connectTimeout = 10 * time.Second

// Options configure a Listener. The zero value works for a bunstore store.
type Options struct {
	// Schema and Table name the session table. Default: the names the
	// cache's backend reports (bunstore's Store has SchemaName and
	// TableName), else tower_sessions and session. Set them when the
	// backend is wrapped in something that hides its names.
	Schema, Table string

	// SkipInstall stops Run from installing the triggers on each
	// connection (see Install); set it when the listener's role may not
	// create triggers and Install runs elsewhere, e.g. at deployment. Run
	// still checks that they are in place before reporting the feed up.
	SkipInstall bool

	// DeletesOnly makes the feed report deletions only: log-outs, CycleID,
	// revocations, TRUNCATE. Saves made elsewhere then reach the cache
	// within its TTL, as without a feed, and do not pay for a notification
	// (InstallDeletes puts no trigger on UPDATE, and NOTIFY is what
	// serialises the commits of a busy session table: BENCHMARKS.md). The
	// cache keeps its TTL while the listener listens (FeedTTL is not used),
	// and a session deleted by another process is refused here within
	// milliseconds. For write-heavy sessions on several processes.
	DeletesOnly bool

	// HealthInterval is how often Run checks that its connection answers
	// and that the triggers are still in place, and how long the check may
	// take. A connection that died silently (a network partition; a server
	// restart or a killed backend is seen at once) goes unnoticed for at
	// most two intervals while the cache trusts the feed; then the cache's
	// TTL applies again. Default:
	// DefaultHealthInterval (5 s); lower it if that window matters more
	// than one tiny query per interval.
	HealthInterval time.Duration

	// MaxBackoff caps the wait between reconnection attempts, which starts
	// at 100 ms and doubles, with jitter. Default: DefaultMaxBackoff (5 s);
	// raise it to spare a database that is down for long.
	MaxBackoff time.Duration

	// Logger receives lost connections and reconnections. Default:
	// slog.Default().
	Logger *slog.Logger
}

// Listener keeps a CachingStore in step with the changes other processes
// make to the session table: it LISTENs on the table's channel over its own
// connection and evicts every session named in a notification. Create it
// with New and run it with Run.
type Listener struct {
	config    *pgx.ConnConfig
	cache     *core.CachingStore
	table     table
	install   bool
	deletes   bool // Options.DeletesOnly
	health    time.Duration
	maxWait   time.Duration
	logger    *slog.Logger
	listening atomic.Bool
	running   atomic.Bool
}

// New returns a Listener that connects with connString (a PostgreSQL URL or
// keyword/value DSN, as pgx.ParseConfig reads it) and evicts from cache. It
// connects to nothing yet.
//
// The connection must reach PostgreSQL itself, or a PgBouncer in session
// pooling mode: in transaction pooling mode LISTEN lands on whichever server
// connection runs it, and notifications are lost. The application's own pool
// may go through PgBouncer.
func New(connString string, cache *core.CachingStore, opts Options) (*Listener, error) {
	if cache == nil {
		return nil, errors.New("pgnotify: New: cache is nil")
	}
	config, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: New: %w", err)
	}
	if config.ConnectTimeout == 0 {
		config.ConnectTimeout = connectTimeout
	}
	if config.RuntimeParams["application_name"] == "" {
		config.RuntimeParams["application_name"] = DefaultApplicationName
	}
	schema, name := opts.Schema, opts.Table
	if named, ok := cache.Backend().(interface {
		SchemaName() string
		TableName() string
	}); ok {
		if schema == "" {
			schema = named.SchemaName()
			if schema == "" {
				return nil, fmt.Errorf("pgnotify: New: the cache's backend (%T) has no schema: is it a PostgreSQL store?", cache.Backend())
			}
		}
		if name == "" {
			name = named.TableName()
		}
	}
	t, err := newTable(schema, name)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		config: config, cache: cache, table: t, install: !opts.SkipInstall, deletes: opts.DeletesOnly,
		health: opts.HealthInterval, maxWait: opts.MaxBackoff, logger: opts.Logger,
	}
	if l.health <= 0 {
		l.health = DefaultHealthInterval
	}
	if l.maxWait <= 0 {
		l.maxWait = DefaultMaxBackoff
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	return l, nil
}

// Channel returns the channel the listener listens on.
func (l *Listener) Channel() string { return l.table.channel() }

// Listening reports whether the listener is connected, listening and has
// found the triggers in place: while it is, the cache serves entries for its
// FeedTTL (with Options.DeletesOnly: still for its TTL); otherwise for its
// TTL. A readiness check may report it.
func (l *Listener) Listening() bool { return l.listening.Load() }

// Run listens until ctx ends, then returns ctx's error. Run it in its own
// goroutine, once per Listener. Each connection installs the triggers
// (unless Options.SkipInstall), LISTENs, checks the triggers, and only then
// tells the cache the feed is up (which empties it: what changed while the
// feed was down was never reported; with Options.DeletesOnly it only
// empties it, and the cache keeps its TTL). A lost connection tells the cache at
// once that the feed is down, so its TTL applies again, and Run reconnects
// with backoff; a failed attempt is logged and retried, never fatal.
func (l *Listener) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("pgnotify: Run called while the listener is already running")
	}
	defer l.running.Store(false)
	defer l.down()
	failures := 0
	for {
		wasUp, err := l.serve(ctx)
		l.down()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wasUp {
			failures = 0
		}
		failures++
		wait := l.backoff(failures)
		l.logger.Warn("pgnotify: the invalidation feed is down; the cache serves entries for its TTL until it is back",
			"channel", l.Channel(), "error", err, "attempt", failures, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the wait after the n-th failure in a row: 100 ms doubling up to
// the cap, spread by ±20%.
func (l *Listener) backoff(n int) time.Duration {
	d := l.maxWait
	if n < 16 {
		d = min(d, 100*time.Millisecond<<(n-1))
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (l *Listener) up() {
	if l.deletes {
		// The cache keeps its TTL; deletions made while the feed was
		// down were never reported.
		l.cache.EvictAll()
	} else {
		l.cache.SetInvalidationFeed(true)
	}
	l.listening.Store(true)
}

func (l *Listener) down() {
	l.listening.Store(false)
	l.cache.SetInvalidationFeed(false)
}

// serve runs one connection until it fails or ctx ends; up reports whether
// the feed was up on it.
func (l *Listener) serve(ctx context.Context) (up bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, l.config)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx) // the connection is dropped either way
	}()
	if l.install {
		if err := install(ctx, conn, l.table.schema, l.table.name, l.triggers()); err != nil {
			return false, err
		}
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel()}.Sanitize()); err != nil {
		return false, fmt.Errorf("LISTEN: %w", err)
	}
	// Checked after LISTEN: a trigger dropped after this check is seen at
	// the next one.
	if err := l.check(ctx, conn); err != nil {
		return false, err
	}
	l.up()
	l.logger.Info("pgnotify: listening", "channel", l.Channel(), "table", l.table.qualified())
	next := time.Now().Add(l.health)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			l.deliver(n.Payload)
		}
		switch {
		case err == nil:
			if time.Now().Before(next) {
				continue
			}
		case ctx.Err() != nil:
			return true, ctx.Err()
		case !pgconn.Timeout(err):
			return true, fmt.Errorf("waiting for notifications: %w", err)
		}
		if err := l.check(ctx, conn); err != nil {
			return true, err
		}
		next = time.Now().Add(l.health)
	}
}

// check runs the health query within one HealthInterval.
func (l *Listener) check(ctx context.Context, conn *pgx.Conn) error {
	hctx, cancel := context.WithTimeout(ctx, l.health)
	defer cancel()
	if err := l.table.healthy(hctx, conn, names(l.triggers())); err != nil {
		return fmt.Errorf("checking the connection and the triggers: %w", err)
	}
	return nil
}

// triggers are the triggers the listener's feed needs.
func (l *Listener) triggers() []trigger {
	if l.deletes {
		return deleteTriggers
	}
	return triggers
}

// deliver evicts the sessions a payload names: ids separated by spaces, or
// "*" for all of them.
func (l *Listener) deliver(payload string) {
	fields := strings.Fields(payload)
	ids := make([]core.ID, 0, len(fields))
	for _, f := range fields {
		if f == "*" {
			l.cache.EvictAll()
			return
		}
		ids = append(ids, core.ID(f))
	}
	if len(ids) > 0 {
		l.cache.Evict(ids...)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// printJSON writes v as indented JSON (no HTML escaping) and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func migrate(ctx context.Context, e *env, _ []string) error {
	if err := e.store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if e.o.json {
		return printJSON(e.stdout, map[string]any{"table": e.tableName(), "migrated": true})
	}
	_, err := fmt.Fprintf(e.stdout, "table %s is ready\n", e.tableName())
	return err
}

// errNotFound reports an unknown, revoked or expired session.
var errNotFound = errors.New("no live session with that token or id (unknown, revoked or expired)")

// inspectOutput is inspect's JSON output.
type inspectOutput struct {
	ID        string         `json:"id"`
	Created   *time.Time     `json:"created"` // null when unknown
	User      string         `json:"user"`
	Expiry    time.Time      `json:"expiry"`
	ExpiresIn float64        `json:"expires_in_seconds"`
	Version   uint64         `json:"version"`
	Data      map[string]any `json:"data"`
}

// timeOrNil is t in UTC, or nil for the zero time (unknown).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func inspect(ctx context.Context, e *env, _ []string) error {
	now := e.now()
	rec, err := e.store.Load(ctx, e.id, now)
	if errors.Is(err, core.ErrCorruptRecord) {
		// The application treats it as no session; say which row and how
		// to be rid of it, rather than only why it failed.
		return fmt.Errorf("inspect: the row of session %s cannot be read (%w); 'sessionctl revoke --id %s' removes it", e.id, err, e.id)
	}
	if err != nil {
		return e.dbError("inspect", err)
	}
	if rec == nil {
		return fmt.Errorf("inspect: %w", errNotFound)
	}
	data := make(map[string]any, len(rec.Data))
	for k, v := range rec.Data {
		data[k] = decodeValue(e.store.Codec().Name(), v)
	}
	out := inspectOutput{
		ID:        string(rec.ID),
		Created:   timeOrNil(rec.Created),
		User:      rec.User,
		Expiry:    rec.Expiry.UTC(),
		ExpiresIn: rec.Expiry.Sub(now).Seconds(),
		Version:   rec.Version,
		Data:      data,
	}
	if e.o.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "id:       %s\n", out.ID)
	if out.Created != nil {
		fmt.Fprintf(e.stdout, "created:  %s\n", out.Created.Format(time.RFC3339Nano))
	}
	if out.User != "" {
		fmt.Fprintf(e.stdout, "user:     %s\n", out.User)
	}
	fmt.Fprintf(e.stdout, "expiry:   %s (in %s)\n", out.Expiry.Format(time.RFC3339Nano), rec.Expiry.Sub(now).Round(time.Second))
	fmt.Fprintf(e.stdout, "version:  %d\n", out.Version)
	fmt.Fprint(e.stdout, "data:     ")
	return printJSON(e.stdout, out.Data)
}

// sessionOutput is one session in the output of sessions.
type sessionOutput struct {
	ID        string     `json:"id"`
	Created   *time.Time `json:"created"`
	Expiry    time.Time  `json:"expiry"`
	ExpiresIn float64    `json:"expires_in_seconds"`
}

func sessions(ctx context.Context, e *env, _ []string) error {
	now := e.now()
	list, err := e.store.UserSessions(ctx, e.o.user, now)
	if err != nil {
		return e.dbError("sessions", err)
	}
	out := make([]sessionOutput, 0, len(list))
	for _, s := range list {
		out = append(out, sessionOutput{ID: string(s.ID), Created: timeOrNil(s.Created), Expiry: s.Expiry.UTC(), ExpiresIn: s.Expiry.Sub(now).Seconds()})
	}
	if e.o.json {
		return printJSON(e.stdout, map[string]any{"user": e.o.user, "sessions": out})
	}
	fmt.Fprintf(e.stdout, "%d live sessions of user %s\n", len(out), e.o.user)
	for _, s := range out {
		created := "unknown"
		if s.Created != nil {
			created = s.Created.Format(time.RFC3339)
		}
		fmt.Fprintf(e.stdout, "%s  created %s  expires %s (in %s)\n", s.ID, created, s.Expiry.Format(time.RFC3339), time.Duration(s.ExpiresIn*float64(time.Second)).Round(time.Second))
	}
	return nil
}

func revoke(ctx context.Context, e *env, pos []string) error {
	if e.o.set["user"] {
		return revokeUser(ctx, e)
	}
	// Delete through bun rather than Store.Delete to learn whether the row
	// existed (expired rows not yet purged count: they are removed too).
	res, err := e.db.NewDelete().TableExpr("?", e.table()).Where("id = ?", string(e.id)).Exec(ctx)
	if err != nil {
		return e.dbError("revoke", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("revoke: %w", errNotFound)
	}
	if e.o.json {
		return printJSON(e.stdout, map[string]any{"id": string(e.id), "revoked": true})
	}
	_, err = fmt.Fprintf(e.stdout, "revoked session %s\n", e.id)
	return err
}

// revokeUser deletes the sessions of --user, but --except, in one
// statement. Revoking a user without sessions is not an error: the user is
// logged out everywhere either way.
func revokeUser(ctx context.Context, e *env) error {
	n, err := e.store.DeleteUserSessions(ctx, e.o.user, core.ID(e.o.except))
	if err != nil {
		return e.dbError("revoke", err)
	}
	if e.o.json {
		return printJSON(e.stdout, map[string]any{"user": e.o.user, "revoked": n})
	}
	_, err = fmt.Fprintf(e.stdout, "revoked %d sessions of user %s\n", n, e.o.user)
	return err
}

// expiryArg is t in the representation of the expiry_date column, as bunstore
// writes it: timestamptz (PostgreSQL), a UTC DATETIME(6) string (MySQL),
// integer microseconds since the Unix epoch (SQLite).
func (e *env) expiryArg(t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	switch e.db.Dialect().Name() {
	case dialect.MySQL:
		return t.Format("2006-01-02 15:04:05.000000")
	case dialect.SQLite:
		return t.UnixMicro()
	default:
		return t
	}
}

// statsOutput is stats' JSON output. Sizes are of the stored data blob of
// live sessions, in bytes; they are zero when there are none.
type statsOutput struct {
	Table   string `json:"table"`
	Live    int64  `json:"live"`
	Expired int64  `json:"expired"`
	// Unreadable counts rows whose expiry no session has (past
	// core.MaxDeadline, such as PostgreSQL's infinity; on SQLite also
	// text, blobs or NULL): Load reports them corrupt and purge removes
	// them, so they are neither live nor expired.
	Unreadable int64 `json:"unreadable"`
	DataBytes  struct {
		P50   int64 `json:"p50"`
		P90   int64 `json:"p90"`
		P99   int64 `json:"p99"`
		Max   int64 `json:"max"`
		Total int64 `json:"total"`
	} `json:"data_bytes"`
}

func stats(ctx context.Context, e *env, _ []string) error {
	now, last := e.expiryArg(e.now()), e.expiryArg(core.MaxDeadline)
	// live is a row whose expiry is after now and a deadline a session can
	// have (SQLite sorts text and blobs after every number).
	live := bun.SafeQuery("expiry_date > ? AND expiry_date <= ?", now, last)
	var out statsOutput
	out.Table = e.tableName()
	err := e.db.NewSelect().
		TableExpr("?", e.table()).
		ColumnExpr("COUNT(CASE WHEN ? THEN 1 END)", live).
		ColumnExpr("COUNT(CASE WHEN expiry_date <= ? THEN 1 END)", now).
		ColumnExpr("COUNT(CASE WHEN expiry_date > ? OR expiry_date IS NULL THEN 1 END)", last).
		ColumnExpr("COALESCE(MAX(CASE WHEN ? THEN length(data) END), 0)", live).
		ColumnExpr("COALESCE(SUM(CASE WHEN ? THEN length(data) END), 0)", live).
		Scan(ctx, &out.Live, &out.Expired, &out.Unreadable, &out.DataBytes.Max, &out.DataBytes.Total)
	if err != nil {
		return e.dbError("stats", err)
	}
	if out.Live > 0 {
		// Nearest-rank percentiles: the value at rank ceil(p*n) in
		// ascending order, picked in one pass with a window function
		// (PostgreSQL, MariaDB 10.2+, MySQL 8, SQLite 3.25+).
		pct := []struct {
			percent int64
			dst     *int64
		}{{50, &out.DataBytes.P50}, {90, &out.DataBytes.P90}, {99, &out.DataBytes.P99}}
		ranks := make([]int64, len(pct))
		for i, x := range pct {
			ranks[i] = nearestRank(x.percent, out.Live)
		}
		inner := e.db.NewSelect().
			TableExpr("?", e.table()).
			ColumnExpr("length(data) AS size").
			ColumnExpr("ROW_NUMBER() OVER (ORDER BY length(data)) AS rank_").
			Where("?", live)
		var rows []struct {
			Rank int64 `bun:"rank_"`
			Size int64 `bun:"size"`
		}
		err := e.db.NewSelect().
			TableExpr("(?) AS sizes", inner).
			ColumnExpr("rank_, size").
			Where("rank_ IN (?)", bun.List(ranks)).
			Scan(ctx, &rows)
		if err != nil {
			return e.dbError("stats", err)
		}
		for _, r := range rows {
			for i, x := range pct {
				if ranks[i] == r.Rank {
					*x.dst = r.Size
				}
			}
		}
	}
	if e.o.json {
		return printJSON(e.stdout, out)
	}
	d := out.DataBytes
	unreadable := ""
	if out.Unreadable > 0 {
		unreadable = fmt.Sprintf("unreadable: %d (an expiry no session has; purge removes them)\n", out.Unreadable)
	}
	_, err = fmt.Fprintf(e.stdout, "table:    %s\nlive:     %d\nexpired:  %d\n%sdata size of live sessions (bytes): p50 %d, p90 %d, p99 %d, max %d, total %d\n",
		out.Table, out.Live, out.Expired, unreadable, d.P50, d.P90, d.P99, d.Max, d.Total)
	return err
}

// nearestRank is the 1-based rank of the percent-th percentile of n sorted
// values: ceil(percent*n/100), at least 1.
func nearestRank(percent, n int64) int64 {
	return max(1, min((percent*n+99)/100, n))
}

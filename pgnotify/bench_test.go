package pgnotify_test

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/internal/dbtest"
	"github.com/sqlsessions/sqlsessions/pgnotify"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// BenchmarkTriggerCost measures what the notification triggers cost a save
// (bunstore's conditional UPDATE of one row, as Session.Commit runs it):
// without triggers ("none"), with them and one process listening as a
// Listener does ("notify"), and with them and nobody listening
// ("notify-nolisten"). Two more variants show what the parts cost and why
// the UPDATE trigger is a row-level one: "noop" keeps the triggers but
// sends nothing, "statement" makes the UPDATE trigger a statement-level one
// with a transition table, as the DELETE trigger is (both with a listener). serial is one save at a time; parallel8 runs 8
// goroutines on an 8-connection pool, where the database-wide lock NOTIFY
// takes at commit stops commits from sharing WAL flushes.
//
// Besides ns/op it reports pg-cpu-µs/op: the CPU time the server's backends
// of the pool and of the listener spent per save, read from /proc (only
// when PostgreSQL runs on this machine and /proc/PID/stat is readable),
// which a busy machine disturbs less than wall-clock time. Run the variants
// several times, interleaved, on a quiet machine:
//
//	go test -run '^$' -bench TriggerCost -count 5 ./pgnotify
func BenchmarkTriggerCost(b *testing.B) {
	for _, variant := range []string{"none", "notify", "notify-nolisten", "noop", "statement"} {
		b.Run(variant, func(b *testing.B) {
			dsn, app := withAppName(b, dbtest.PostgresURL())
			sqldb, err := sql.Open("pgx", dsn)
			if err != nil {
				b.Fatal(err)
			}
			const workers = 8
			sqldb.SetMaxOpenConns(workers)
			sqldb.SetMaxIdleConns(workers)
			b.Cleanup(func() { sqldb.Close() })
			store := dbtest.NewStore(b, bun.NewDB(sqldb, pgdialect.New()))
			admin := connect(b, dbtest.PostgresURL())
			if variant != "none" {
				if err := pgnotify.Install(context.Background(), admin, store.SchemaName(), store.TableName()); err != nil {
					b.Fatal(err)
				}
			}
			schema := store.SchemaName()
			exec := func(q string) {
				if _, err := admin.Exec(context.Background(), q); err != nil {
					b.Fatalf("%s: %v", q, err)
				}
			}
			switch variant {
			case "noop":
				exec("CREATE OR REPLACE FUNCTION " + pgx.Identifier{schema, "sqlsessions_notify_row_v1"}.Sanitize() + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
			case "statement":
				table := pgx.Identifier{schema, store.TableName()}.Sanitize()
				exec("DROP TRIGGER sqlsessions_notify_v1_update ON " + table)
				exec("CREATE TRIGGER sqlsessions_notify_v1_update AFTER UPDATE ON " + table + " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION " +
					pgx.Identifier{schema, "sqlsessions_notify_v1"}.Sanitize() + "('" + pgnotify.Channel(schema, store.TableName()) + "')")
			}
			listenDSN, listenApp := withAppName(b, dbtest.PostgresURL())
			if variant != "none" && variant != "notify-nolisten" {
				c := connect(b, listenDSN)
				if _, err := c.Exec(context.Background(), "LISTEN "+pgnotify.Channel(store.SchemaName(), store.TableName())); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					for ctx.Err() == nil {
						c.WaitForNotification(ctx)
					}
				}()
				b.Cleanup(func() { cancel(); <-done })
			}
			const perWorker = 100
			recs := make([][]*core.Record, workers)
			now := time.Now().UTC()
			for w := range recs {
				for i := range perWorker {
					tok, _ := core.NewToken(nil)
					v, _ := store.Codec().Marshal(i)
					r := &core.Record{ID: tok.ID(), Data: map[string][]byte{"n": v}, Expiry: now.Add(time.Hour), Created: now}
					if err := store.Create(context.Background(), r); err != nil {
						b.Fatal(err)
					}
					recs[w] = append(recs[w], r)
				}
			}
			// save reports failures with Error: RunParallel's goroutines
			// may not call Fatal.
			save := func(b *testing.B, r *core.Record, i int) bool {
				v, err := store.Codec().Marshal(i)
				if err == nil {
					r.Data["n"] = v
					err = store.Save(context.Background(), r)
				}
				if err != nil {
					b.Error(err)
					return false
				}
				return true
			}
			b.Run("serial", func(b *testing.B) {
				cpu := startCPU(b, admin, app, listenApp)
				i := 0
				for b.Loop() {
					if !save(b, recs[0][i%perWorker], i) {
						return
					}
					i++
				}
				cpu.report(b)
			})
			b.Run("parallel8", func(b *testing.B) {
				var next atomic.Int64
				b.SetParallelism((workers + 1) / 2) // 8 goroutines at GOMAXPROCS=2
				cpu := startCPU(b, admin, app, listenApp)
				b.RunParallel(func(pb *testing.PB) {
					w := int(next.Add(1)-1) % workers
					i := 0
					for pb.Next() {
						if !save(b, recs[w][i%perWorker], i) {
							return
						}
						i++
					}
				})
				cpu.report(b)
			})
		})
	}
}

// cpuMeter sums the CPU time of the server backends of the pool (whose
// application_name is app) and of the listener (listenApp).
type cpuMeter struct {
	admin                 *pgx.Conn
	app, listenApp        string
	writers, listener     time.Duration
	writersOK, listenerOK bool
}

func startCPU(b *testing.B, admin *pgx.Conn, app, listenApp string) *cpuMeter {
	m := &cpuMeter{admin: admin, app: app, listenApp: listenApp}
	m.writers, m.writersOK = m.read(b, app)
	m.listener, m.listenerOK = m.read(b, listenApp)
	return m
}

// report adds pg-cpu-µs/op, the writers' backends' CPU per save, and
// listener-cpu-µs/op, the listening backend's (paid once per listening
// process).
func (m *cpuMeter) report(b *testing.B) {
	if b.N == 0 {
		return
	}
	if end, ok := m.read(b, m.app); ok && m.writersOK {
		b.ReportMetric(float64(end-m.writers)/float64(time.Microsecond)/float64(b.N), "pg-cpu-µs/op")
	}
	if end, ok := m.read(b, m.listenApp); ok && m.listenerOK {
		b.ReportMetric(float64(end-m.listener)/float64(time.Microsecond)/float64(b.N), "listener-cpu-µs/op")
	}
}

// read returns the CPU time so far of the backends whose application_name
// is app, or false if there are none or /proc does not show them
// (PostgreSQL elsewhere, or no permission).
func (m *cpuMeter) read(b *testing.B, app string) (time.Duration, bool) {
	rows, err := m.admin.Query(context.Background(), "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			return 0, false
		}
		// Fields after the command's closing parenthesis: utime and
		// stime are the 12th and 13th, in clock ticks (100 per second).
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			return 0, false
		}
		for _, s := range f[11:13] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, false
			}
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total, len(pids) > 0
}

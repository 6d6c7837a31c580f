// Command smoke opens a database with sqlitewasm, writes and reads a row and
// prints what it found. The sqlitewasm tests build it with CGO_ENABLED=0 and
// for GOOS=wasip1 and GOOS=js to prove those builds work, and run it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

func main() {
	dsn := "sqlite::memory:"
	if len(os.Args) > 1 {
		dsn = os.Args[1]
	}
	if err := run(dsn); err != nil {
		fmt.Fprintln(os.Stderr, "smoke:", err)
		os.Exit(1)
	}
}

func run(dsn string) error {
	ctx := context.Background()
	db, err := sqlitewasm.Open(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		return err
	}
	for range 3 {
		if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ('n', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1`); err != nil {
			return err
		}
	}
	var v int
	var version, journal string
	if err := db.QueryRowContext(ctx, `SELECT v, sqlite_version() FROM kv WHERE k = 'n'`).Scan(&v, &version); err != nil {
		return err
	}
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&journal); err != nil {
		return err
	}
	fmt.Printf("ok v=%d journal=%s sqlite=%s\n", v, journal, version)
	return nil
}

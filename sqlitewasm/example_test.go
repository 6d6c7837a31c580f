package sqlitewasm_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

func Example() {
	ctx := context.Background()
	db, err := sqlitewasm.Open("sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if _, err := db.ExecContext(ctx, `CREATE TABLE greeting (text TEXT)`); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO greeting (text) VALUES (?)`, "hello from SQLite, no cgo"); err != nil {
		log.Fatal(err)
	}
	var text string
	if err := db.NewSelect().Table("greeting").Column("text").Scan(ctx, &text); err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)
	// Output: hello from SQLite, no cgo
}

func ExampleOpen_file() {
	// A file database for a session store: WAL, synchronous=NORMAL, a busy
	// timeout and a pool of 8 connections instead of 4.
	db, err := sqlitewasm.Open("sqlite://sessions.db", sqlitewasm.WithMaxOpenConns(8))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
}

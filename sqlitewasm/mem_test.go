package sqlitewasm

import (
	"database/sql"
	"testing"
)

// TestMemoryFreedOnClose checks that closing the DB deletes its memdb
// database, so a long-running program that opens many does not leak them.
func TestMemoryFreedOnClose(t *testing.T) {
	db, name, err := open("sqlite::memory:")
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		t.Fatal("in-memory Open reported no memdb name")
	}
	probe := func() error {
		// mode=rw: open an existing database only, never create one.
		p, err := sql.Open("sqlite3", "file:/"+name+"?vfs=memdb&mode=rw")
		if err != nil {
			return err
		}
		defer p.Close()
		return p.Ping()
	}
	if err := probe(); err != nil {
		t.Fatalf("memdb %q not reachable while open: %v", name, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := probe(); err == nil {
		t.Fatalf("memdb %q still exists after Close", name)
	}
}

package sqlitewasm

import (
	"database/sql"
	"testing"

	"github.com/sqlsessions/sqlsessions/sqlitewasm/internal/memdb"
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
		p, err := sql.Open("sqlite3", "file:/"+name+"?vfs="+memdb.VFSName+"&mode=rw")
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

// A file:/name?vfs=memdb URI names one in-memory database that every
// pooled connection shares (served by sqlitewasm's copy of memdb).
func TestNamedMemdbShared(t *testing.T) {
	db, err := Open("file:/shared-" + t.Name() + "?vfs=memdb")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	conns := make([]*sql.Conn, 2)
	for i := range conns {
		if conns[i], err = db.DB.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	if _, err := conns[0].ExecContext(ctx, "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := conns[1].QueryRowContext(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != 7 {
		t.Fatalf("second connection read %d, %v; want 7 (one shared database)", v, err)
	}
}

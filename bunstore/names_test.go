package bunstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// offline is a database/sql connector that refuses to connect: New must
// build its statements without a server, and these tests need no driver
// (bunstore's go.mod lists none). Tests against real databases live in
// github.com/sqlsessions/sqlsessions/internal/bunstoretests.
type offline struct{}

var errOffline = errors.New("offline: this test must not reach a database")

func (offline) Connect(context.Context) (driver.Conn, error) { return nil, errOffline }
func (offline) Driver() driver.Driver                        { return offlineDriver{} }

type offlineDriver struct{}

func (offlineDriver) Open(string) (driver.Conn, error) { return nil, errOffline }

// offlineDBs returns one *bun.DB per dialect that New can build statements
// for without a server: any statement sent would fail with errOffline.
func offlineDBs(t *testing.T) map[string]*bun.DB {
	t.Helper()
	open := func() *sql.DB {
		db := sql.OpenDB(offline{})
		t.Cleanup(func() { db.Close() })
		return db
	}
	return map[string]*bun.DB{
		"postgres": bun.NewDB(open(), pgdialect.New()),
		"mysql":    bun.NewDB(open(), mysqldialect.New()),
		"sqlite":   bun.NewDB(open(), sqlitedialect.New()),
	}
}

func TestNamesRejected(t *testing.T) {
	bad := []string{
		"x; drop table y", `"quoted"`, "", strings.Repeat("a", 200), "séance", "сессии", "1abc",
		"a.b", "a b", "a-b", "`x`", "x'y", "x\x00", strings.Repeat("a", 64),
	}
	for name, db := range offlineDBs(t) {
		for _, n := range bad {
			if _, err := bunstore.New(db, bunstore.WithTableName(n)); !errors.Is(err, bunstore.ErrInvalidName) {
				t.Errorf("%s: WithTableName(%q): got %v, want ErrInvalidName", name, n, err)
			} else if !strings.Contains(err.Error(), "table") {
				t.Errorf("%s: WithTableName(%q): error %q does not say which name", name, n, err)
			}
			if name == "sqlite" {
				continue
			}
			if _, err := bunstore.New(db, bunstore.WithSchemaName(n)); !errors.Is(err, bunstore.ErrInvalidName) {
				t.Errorf("%s: WithSchemaName(%q): got %v, want ErrInvalidName", name, n, err)
			}
		}
		for _, good := range []string{"_", "a", "Sessions_2", strings.Repeat("a", 63)} {
			if _, err := bunstore.New(db, bunstore.WithTableName(good)); err != nil {
				t.Errorf("%s: WithTableName(%q): %v", name, good, err)
			}
		}
	}
}

func TestSQLiteRejectsSchema(t *testing.T) {
	db := offlineDBs(t)["sqlite"]
	_, err := bunstore.New(db, bunstore.WithSchemaName("main"))
	if err == nil || !strings.Contains(err.Error(), "SQLite has no schemas") {
		t.Fatalf("WithSchemaName on SQLite: got %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := bunstore.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	db := offlineDBs(t)["sqlite"]
	if _, err := bunstore.New(db, bunstore.WithCodec(nil)); err == nil {
		t.Error("WithCodec(nil) accepted")
	}
	if _, err := bunstore.New(db, bunstore.WithDeleteBatchSize(0)); err == nil {
		t.Error("WithDeleteBatchSize(0) accepted")
	}
}

func TestDefaults(t *testing.T) {
	dbs := offlineDBs(t)
	for name, want := range map[string][2]string{
		"postgres": {"tower_sessions", "session"},
		"mysql":    {"tower_sessions", "session"},
		"sqlite":   {"", "tower_sessions"},
	} {
		s, err := bunstore.New(dbs[name])
		if err != nil {
			t.Fatal(err)
		}
		if s.SchemaName() != want[0] || s.TableName() != want[1] {
			t.Errorf("%s: defaults %q.%q, want %q.%q", name, s.SchemaName(), s.TableName(), want[0], want[1])
		}
		if s.Codec() != bunstore.MsgPack {
			t.Errorf("%s: default codec %v", name, s.Codec().Name())
		}
	}
}

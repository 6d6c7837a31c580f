package dburl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		url  string
		want Kind
	}{
		{"postgres://u@h/db", Postgres},
		{"postgresql://u@h/db", Postgres},
		{"POSTGRES://u@h/db", Postgres},
		{"mysql://u@h/db", MySQL},
		{"mariadb://u@h/db", MySQL},
		{"sqlite::memory:", SQLite},
		{"sqlite://s.db", SQLite},
		{"sqlite:s.db", SQLite},
		{"file:s.db?mode=rwc", SQLite},
		{"", ""},
		{"s.db", ""},
		{"/var/lib/s.db", ""},
		{"redis://h", ""},
		{"pg://u:secret@h/db", ""},
	} {
		got, err := KindOf(c.url)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("KindOf(%q) = %q, %v; want %q", c.url, got, err, c.want)
		}
		if err != nil && (!errors.Is(err, ErrUnsupported) || strings.Contains(err.Error(), "secret")) {
			t.Errorf("KindOf(%q): error %v", c.url, err)
		}
	}
}

func TestMySQLConfig(t *testing.T) {
	cfg, err := MySQLConfig("mysql://app:p%40ss:w%2Frd@db.example:3307/sessions?tls=skip-verify&timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "app" || cfg.Passwd != "p@ss:w/rd" || cfg.Net != "tcp" || cfg.Addr != "db.example:3307" || cfg.DBName != "sessions" {
		t.Errorf("got user %q pass %q net %q addr %q db %q", cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName)
	}
	if !cfg.ParseTime || cfg.Loc != time.UTC || cfg.TLSConfig != "skip-verify" || cfg.Timeout != 5*time.Second {
		t.Errorf("parameters: parseTime %v loc %v tls %q timeout %v", cfg.ParseTime, cfg.Loc, cfg.TLSConfig, cfg.Timeout)
	}

	cfg, err = MySQLConfig("mysql://root@localhost/test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "localhost:3306" || !cfg.ParseTime || cfg.Loc != time.UTC || cfg.Passwd != "" {
		t.Errorf("defaults: addr %q parseTime %v loc %v", cfg.Addr, cfg.ParseTime, cfg.Loc)
	}

	cfg, err = MySQLConfig("mysql://root@/test?socket=/run/mysqld/mysqld.sock")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Net != "unix" || cfg.Addr != "/run/mysqld/mysqld.sock" {
		t.Errorf("socket: net %q addr %q", cfg.Net, cfg.Addr)
	}

	for _, bad := range []string{"mysql://u:secret@h/db?parseTime=maybe", "mysql://u:secret@h/a/b", "mysql://u:secret@h:port/db",
		// parseTime and loc are the store's: another value is an error, not ignored.
		"mysql://root:secret@localhost/test?parseTime=false", "mysql://root:secret@localhost/test?loc=Local"} {
		if _, err := MySQLConfig(bad); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("MySQLConfig(%q): error %v", bad, err)
		}
	}
}

func TestOpenPostgresURLErrorHidesPassword(t *testing.T) {
	_, _, err := Open("postgres://u:secret@h:notaport/db", Options{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v", err)
	}
}

func TestOpenSQLiteMemory(t *testing.T) {
	db, kind, err := Open("sqlite::memory:", Options{})
	if err != nil || kind != SQLite {
		t.Fatalf("Open: %v, %v", kind, err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Errorf("query: %v, %d", err, n)
	}
}

func TestSQLiteFile(t *testing.T) {
	for _, c := range []struct {
		url, path string
		ok        bool
	}{
		{"sqlite://s.db", "s.db", true},
		{"sqlite:///var/lib/s.db", "/var/lib/s.db", true},
		{"sqlite:s%20x.db?mode=rwc", "s x.db", true},
		{"file:s.db", "s.db", true},
		{"file:///tmp/s.db", "/tmp/s.db", true},
		{"sqlite::memory:", "", false},
		{"sqlite://s.db?mode=memory", "", false},
		{"postgres://h/db", "", false},
	} {
		p, ok := SQLiteFile(c.url)
		if p != c.path || ok != c.ok {
			t.Errorf("SQLiteFile(%q) = %q, %v; want %q, %v", c.url, p, ok, c.path, c.ok)
		}
	}
}

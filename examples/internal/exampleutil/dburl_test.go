package exampleutil

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestMySQLDSN(t *testing.T) {
	tests := []struct {
		url                       string
		user, pass, net, addr, db string
		tls, collation, charset   string
	}{
		{url: "mysql://root@127.0.0.1:3306/test", user: "root", net: "tcp", addr: "127.0.0.1:3306", db: "test"},
		{url: "mysql://root:secret@db.example.com/app", user: "root", pass: "secret", net: "tcp", addr: "db.example.com:3306", db: "app"},
		{url: "mysql://u%40x:p%3As%2Fw%40rd@localhost:3307/d", user: "u@x", pass: "p:s/w@rd", net: "tcp", addr: "localhost:3307", db: "d"},
		{url: "mysql://root@[::1]:3306/test", user: "root", net: "tcp", addr: "[::1]:3306", db: "test"},
		{url: "mysql://root@/test", user: "root", net: "tcp", addr: "localhost:3306", db: "test"},
		{url: "mysql://root@h/", user: "root", net: "tcp", addr: "h:3306"},
		{url: "mariadb://root@h/test", user: "root", net: "tcp", addr: "h:3306", db: "test"},
		{url: "mysql://root@h/test?ssl-mode=disabled", user: "root", net: "tcp", addr: "h:3306", db: "test", tls: "false"},
		{url: "mysql://root@h/test?ssl-mode=REQUIRED", user: "root", net: "tcp", addr: "h:3306", db: "test", tls: "skip-verify"},
		{url: "mysql://root@h/test?sslmode=verify_identity", user: "root", net: "tcp", addr: "h:3306", db: "test", tls: "true"},
		{url: "mysql://root@h/test?ssl-mode=preferred", user: "root", net: "tcp", addr: "h:3306", db: "test", tls: "preferred"},
		{url: "mysql://root@h/test?charset=utf8mb4&collation=utf8mb4_bin", user: "root", net: "tcp", addr: "h:3306", db: "test", charset: "utf8mb4", collation: "utf8mb4_bin"},
		{url: "mysql://root@h/test?socket=/run/mysqld/mysqld.sock", user: "root", net: "unix", addr: "/run/mysqld/mysqld.sock", db: "test"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			dsn, err := MySQLDSN(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			// The DSN must be one the driver parses back to the same settings.
			cfg, err := mysql.ParseDSN(dsn)
			if err != nil {
				t.Fatalf("driver rejects %q: %v", dsn, err)
			}
			if cfg.User != tt.user || cfg.Passwd != tt.pass || cfg.Net != tt.net || cfg.Addr != tt.addr || cfg.DBName != tt.db {
				t.Errorf("%q -> user %q pass %q %s(%s)/%q; want user %q pass %q %s(%s)/%q",
					dsn, cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName, tt.user, tt.pass, tt.net, tt.addr, tt.db)
			}
			if !cfg.ParseTime || cfg.Loc != time.UTC {
				t.Errorf("%q: parseTime %v loc %v, want true and UTC", dsn, cfg.ParseTime, cfg.Loc)
			}
			if !strings.Contains(dsn, "parseTime=true") || !strings.Contains(dsn, "loc=UTC") {
				t.Errorf("%q does not spell out parseTime=true&loc=UTC", dsn)
			}
			if cfg.TLSConfig != tt.tls && !(tt.tls == "" && cfg.TLSConfig == "") {
				t.Errorf("%q: tls %q, want %q", dsn, cfg.TLSConfig, tt.tls)
			}
			if tt.collation != "" && cfg.Collation != tt.collation {
				t.Errorf("%q: collation %q, want %q", dsn, cfg.Collation, tt.collation)
			}
			if tt.charset != "" && !strings.Contains(dsn, "charset="+tt.charset) {
				t.Errorf("%q: want charset=%s", dsn, tt.charset)
			}
		})
	}
}

func TestMySQLDSNErrors(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"postgres://u:s3cret@h/db", "want mysql://"},
		{"root@tcp(127.0.0.1:3306)/test", "want mysql://"},
		{"mysql:root@h/test", "want mysql://"},
		{"mysql://u:s3cret@h:port/db", "invalid port"},
		{"mysql://u:s3cret@h/a/b", "single database name"},
		{"mysql://u@h/db?ssl-mode=sometimes", "ssl-mode"},
		{"mysql://u@h/db?timeout=5s", `unsupported parameter "timeout"`},
		{"", "want mysql://"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			_, err := MySQLDSN(tt.url)
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("MySQLDSN(%q) = %v, want ErrBadURL", tt.url, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestCheckPostgresURL(t *testing.T) {
	for _, ok := range []string{"postgres://postgres@127.0.0.1:5432/test", "postgresql://u:p@h/db?sslmode=disable"} {
		if err := CheckPostgresURL(ok); err != nil {
			t.Errorf("CheckPostgresURL(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"mysql://u:s3cret@h/db", "host=localhost user=postgres", "postgres://u:s3cret@h:port/db", ""} {
		err := CheckPostgresURL(bad)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("CheckPostgresURL(%q) = %v, want ErrBadURL", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

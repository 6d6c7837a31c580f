package dburl

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
		{url: "mysql://root@h/test?parseTime=true&loc=UTC", user: "root", net: "tcp", addr: "h:3306", db: "test"},
		{url: "mysql://root@h/test?tls=skip-verify", user: "root", net: "tcp", addr: "h:3306", db: "test", tls: "skip-verify"},
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
		{"mysql://u@h/db?ssl-ca=/etc/ca.pem", `unsupported parameter "ssl-ca"`},
		{"mysql://u:s3cret@h/db?parseTime=false", "parseTime=true"},
		{"mysql://u:s3cret@h/db?parseTime=maybe", "parseTime=true"},
		{"mysql://u:s3cret@h/db?loc=Local", "loc=UTC"},
		{"mysql://u:s3cret@h/db?ssl-mode=required&tls=true", "keep one"},
		{"mysql://u:s3cret@h/db?timeout=soon", "parameters"},
		{"mysql://[::1", "parse"},
		{"mysql://u@h/db?frobnicate=1", `unsupported parameter "frobnicate"`},
		{"mysql://u@h/db?time_zone=%27%2B00%3A00%27", `unsupported parameter "time_zone"`},
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

// TestMySQLDSNStrings pins whole DSNs (the cases bunstoretest's converter
// had, with parseTime and loc now always true and UTC).
func TestMySQLDSNStrings(t *testing.T) {
	for in, want := range map[string]string{
		"mysql://root@127.0.0.1:3306/test":       "root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC",
		"mysql://u:p%40ss@db.local/app?tls=true": "u:p@ss@tcp(db.local:3306)/app?parseTime=true&tls=true&loc=UTC",
		"mysql://db:3307/x":                      "tcp(db:3307)/x?parseTime=true&loc=UTC",
		"mariadb://root@h/test?timeout=5s":       "root@tcp(h:3306)/test?parseTime=true&timeout=5s&loc=UTC",
	} {
		got, err := MySQLDSN(in)
		if err != nil || got != want {
			t.Errorf("MySQLDSN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestMySQLTLSServerName: tls=true verifies the certificate against the
// URL's host, not the driver's default address.
func TestMySQLTLSServerName(t *testing.T) {
	for _, raw := range []string{"mysql://u@db.example/app?tls=true", "mysql://u@db.example:3307/app?ssl-mode=verify_identity"} {
		cfg, err := MySQLConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.TLS == nil {
			t.Errorf("%s: no TLS", raw)
		} else if cfg.TLS.ServerName != "db.example" {
			t.Errorf("%s: TLS ServerName %q, want db.example", raw, cfg.TLS.ServerName)
		}
	}
}

func TestNormalizeMySQL(t *testing.T) {
	for in, want := range map[string]string{
		"root@tcp(127.0.0.1:3306)/test?parseTime=true": "root@tcp(127.0.0.1:3306)/test?parseTime=true",
		"root@tcp(h)/t?loc=Asia%2FKolkata":             "root@tcp(h)/t?loc=Asia%2FKolkata",
		"MYSQL://root@h/t":                             "root@tcp(h:3306)/t?parseTime=true&loc=UTC",
	} {
		if got, err := NormalizeMySQL(in); err != nil || got != want {
			t.Errorf("NormalizeMySQL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeMySQL("mysql://u:s3cret@h/db?loc=Local"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("NormalizeMySQL of a bad URL: %v", err)
	}
}

func TestMySQLURLFromDSN(t *testing.T) {
	for in, want := range map[string]string{
		"root@tcp(127.0.0.1:3306)/test?parseTime=true": "mysql://root@127.0.0.1:3306/test",
		"u:p@ss@tcp(h:3307)/d":                         "mysql://u:p%40ss@h:3307/d",
		"root@unix(/run/mysqld/mysqld.sock)/t":         "mysql://root@/t?socket=%2Frun%2Fmysqld%2Fmysqld.sock",
	} {
		got, err := MySQLURLFromDSN(in)
		if err != nil || got != want {
			t.Errorf("MySQLURLFromDSN(%q) = %q, %v; want %q", in, got, err, want)
			continue
		}
		// And back: the same server, user and database.
		dsn, err := MySQLDSN(got)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := mysql.ParseDSN(in)
		b, _ := mysql.ParseDSN(dsn)
		if a.User != b.User || a.Passwd != b.Passwd || a.Net != b.Net || a.Addr != b.Addr || a.DBName != b.DBName {
			t.Errorf("%q -> %q -> %q: not the same server", in, got, dsn)
		}
	}
	if _, err := MySQLURLFromDSN("mysql://root@h/t"); !errors.Is(err, ErrBadURL) {
		t.Errorf("a URL taken for a DSN: %v", err)
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

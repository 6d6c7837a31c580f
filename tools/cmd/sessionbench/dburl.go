package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Where the databases are: the environment variables the project's tests
// read, with the same defaults. This file is all the command needs to find
// them, so that it links no test helper (and no testing package).
const (
	envPostgres        = "SQLSESSIONS_POSTGRES_URL"
	envMySQL           = "SQLSESSIONS_MYSQL_URL"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
)

// postgresURL returns SQLSESSIONS_POSTGRES_URL, or the local server.
func postgresURL() string {
	if u := os.Getenv(envPostgres); u != "" {
		return u
	}
	return defaultPostgresURL
}

// mysqlConfig returns SQLSESSIONS_MYSQL_URL (a go-sql-driver DSN or a
// mysql://user:pass@host:port/db URL), or the local server, with
// parseTime=true and loc=UTC: bunstore and the floor write times in UTC.
func mysqlConfig() (*mysql.Config, error) {
	s := os.Getenv(envMySQL)
	if s == "" {
		s = defaultMySQLDSN
	}
	if strings.HasPrefix(s, "mysql://") || strings.HasPrefix(s, "mariadb://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envMySQL, err)
		}
		c := mysql.NewConfig()
		if u.User != nil {
			c.User = u.User.Username()
			c.Passwd, _ = u.User.Password()
		}
		c.Net, c.Addr = "tcp", u.Host
		if u.Port() == "" {
			c.Addr += ":3306"
		}
		c.DBName = strings.TrimPrefix(u.Path, "/")
		for k, v := range u.Query() {
			c.Params = setParam(c.Params, k, v[len(v)-1])
		}
		s = c.FormatDSN()
	}
	c, err := mysql.ParseDSN(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envMySQL, err)
	}
	c.ParseTime = true
	c.Loc = time.UTC
	return c, nil
}

func setParam(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

package dburl

import "os"

// Environment variables naming the PostgreSQL and MySQL servers our tests
// and measuring commands (sessionbench, sessionsoak) use.
const (
	EnvPostgres = "SQLSESSIONS_POSTGRES_URL"
	EnvMySQL    = "SQLSESSIONS_MYSQL_URL"
)

// The local servers used when the environment variables are unset.
const (
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC"
)

// PostgresURLFromEnv returns SQLSESSIONS_POSTGRES_URL, or DefaultPostgresURL.
func PostgresURLFromEnv() string {
	if u := os.Getenv(EnvPostgres); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// MySQLFromEnv returns SQLSESSIONS_MYSQL_URL as given, or DefaultMySQLDSN:
// a mysql:// URL or a go-sql-driver/mysql DSN (NormalizeMySQL turns either
// into a DSN).
func MySQLFromEnv() string {
	if u := os.Getenv(EnvMySQL); u != "" {
		return u
	}
	return DefaultMySQLDSN
}

// MySQLDSNFromEnv is NormalizeMySQL(MySQLFromEnv()).
func MySQLDSNFromEnv() (string, error) {
	return NormalizeMySQL(MySQLFromEnv())
}

// Package bunstoretests holds bunstore's tests that need a database: they
// run against PostgreSQL (pgx and lib/pq), MariaDB and SQLite through
// internal/dbtest, and use only bunstore's exported API. They live outside
// the bunstore module so that its go.mod names no database driver; the
// package has no code of its own.
package bunstoretests

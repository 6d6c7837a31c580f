module github.com/sqlsessions/sqlsessions/pgnotify

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.12.0
	github.com/sqlsessions/sqlsessions/bunstore v0.1.0
	github.com/sqlsessions/sqlsessions/core v0.1.0
	github.com/sqlsessions/sqlsessions/httpadapter v0.1.0
	github.com/sqlsessions/sqlsessions/internal v0.1.0
	github.com/uptrace/bun v1.3.0
	github.com/uptrace/bun/dialect/pgdialect v1.3.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/go-sql-driver/mysql v1.10.1 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/jinzhu/inflection v1.0.0 // indirect
	github.com/lib/pq v1.12.3 // indirect
	github.com/ncruces/go-sqlite3 v0.37.0 // indirect
	github.com/ncruces/go-sqlite3-wasm/v6 v6.5.35401 // indirect
	github.com/ncruces/julianday v1.0.0 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
	github.com/sqlsessions/sqlsessions/sqlitewasm v0.1.0 // indirect
	github.com/tmthrgd/go-hex v0.0.0-20190904060850-447a3041c3bc // indirect
	github.com/uptrace/bun/dialect/mysqldialect v1.3.0 // indirect
	github.com/uptrace/bun/dialect/sqlitedialect v1.3.0 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace github.com/sqlsessions/sqlsessions/core => ../core

replace github.com/sqlsessions/sqlsessions/bunstore => ../bunstore

replace github.com/sqlsessions/sqlsessions/httpadapter => ../httpadapter

replace github.com/sqlsessions/sqlsessions/internal => ../internal

replace github.com/sqlsessions/sqlsessions/sqlitewasm => ../sqlitewasm

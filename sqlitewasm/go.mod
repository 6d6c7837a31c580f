module github.com/sqlsessions/sqlsessions/sqlitewasm

go 1.26.0

require (
	github.com/ncruces/go-sqlite3 v0.37.0
	github.com/sqlsessions/sqlsessions/bunstore v0.1.0
	github.com/sqlsessions/sqlsessions/core v0.1.0
	github.com/uptrace/bun v1.3.0
	github.com/uptrace/bun/dialect/sqlitedialect v1.3.0
)

require (
	github.com/jinzhu/inflection v1.0.0 // indirect
	github.com/ncruces/go-sqlite3-wasm/v6 v6.5.35401 // indirect
	github.com/ncruces/julianday v1.0.0 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
	github.com/tmthrgd/go-hex v0.0.0-20190904060850-447a3041c3bc // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace (
	github.com/sqlsessions/sqlsessions/bunstore => ../bunstore
	github.com/sqlsessions/sqlsessions/core => ../core
)

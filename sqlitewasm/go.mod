module github.com/sqlsessions/sqlsessions/sqlitewasm

go 1.26

require github.com/sqlsessions/sqlsessions/bunstore v0.1.0

replace (
	github.com/sqlsessions/sqlsessions/bunstore => ../bunstore
	github.com/sqlsessions/sqlsessions/core => ../core
)

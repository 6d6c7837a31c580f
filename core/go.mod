module github.com/sqlsessions/sqlsessions/core

go 1.26

module github.com/sqlsessions/sqlsessions/examples

go 1.26

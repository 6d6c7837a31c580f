module github.com/sqlsessions/sqlsessions/tools

go 1.26

module github.com/sqlsessions/sqlsessions/bunstore

go 1.26

require github.com/sqlsessions/sqlsessions/core v0.1.0

replace github.com/sqlsessions/sqlsessions/core => ../core

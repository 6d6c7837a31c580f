module github.com/sqlsessions/sqlsessions/tools

go 1.26

require (
	github.com/tetratelabs/wazero v1.12.0 // indirect
	golang.org/x/sys v0.44.0 // indirect
)

tool github.com/tetratelabs/wazero/cmd/wazero

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sqlsessions/sqlsessions/bunstore"
	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/sqlitewasm"
)

func main() {
	ctx := context.Background()
	db, err := sqlitewasm.Open(os.Args[1])
	fmt.Println("open", err)
	store, err := bunstore.New(db)
	fmt.Println("new", err)
	fmt.Println("migrate", store.Migrate(ctx))
	s := core.NewSession(store, "", nil)
	fmt.Println("insert", s.Insert(ctx, "counter", 1))
	fmt.Println(s.Commit(ctx))
	s2 := core.NewSession(store, s.Token().String(), nil)
	n, ok, err := core.Get[int](ctx, s2, "counter")
	fmt.Println("get", n, ok, err)
	fmt.Println("insert", s2.Insert(ctx, "counter", n+1))
	fmt.Println(s2.Commit(ctx))
}

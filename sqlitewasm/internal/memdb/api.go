// Package memdb is ncruces/go-sqlite3's "memdb" VFS (v0.37.0, vfs/memdb,
// MIT License, Copyright (c) 2023 Nuno Cruces), registered as "sqlitewasm-memdb":
// the in-memory databases behind sqlite::memory:, shared by the connections of
// one pool. It is a copy because the original package imports testing (for its
// TestDB helper), which would link testing into every program using sqlitewasm.
// Only the package clause, the VFS name and the removal of TestDB differ.
package memdb

import (
	"sync"

	"github.com/ncruces/go-sqlite3/vfs"
)

// VFSName is the name the VFS is registered under.
const VFSName = "sqlitewasm-memdb"

func init() {
	vfs.Register(VFSName, memVFS{})
}

var (
	memoryMtx sync.Mutex
	// +checklocks:memoryMtx
	memoryDBs = map[string]*memDB{}
)

// Create creates a shared memory database,
// using data as its initial contents.
// The new database takes ownership of data,
// and the caller should not use data after this call.
func Create(name string, data []byte) {
	db := &memDB{
		refs: 1,
		name: name,
		size: int64(len(data)),
	}

	// Convert data from WAL/2 to rollback journal.
	if len(data) >= 20 && (false ||
		data[18] == 2 && data[19] == 2 ||
		data[18] == 3 && data[19] == 3) {
		data[18] = 1
		data[19] = 1
	}

	sectors := divRoundUp(db.size, sectorSize)
	db.data = make([]*[sectorSize]byte, sectors)
	for i := range db.data {
		sector := data[i*sectorSize:]
		if len(sector) >= sectorSize {
			db.data[i] = (*[sectorSize]byte)(sector)
		} else {
			db.data[i] = new([sectorSize]byte)
			copy((*db.data[i])[:], sector)
		}
	}

	memoryMtx.Lock()
	memoryDBs[name] = db
	memoryMtx.Unlock()
}

// Delete deletes a shared memory database.
func Delete(name string) {
	memoryMtx.Lock()
	delete(memoryDBs, name)
	memoryMtx.Unlock()
}

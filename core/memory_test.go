package core_test

import (
	"testing"

	"github.com/sqlsessions/sqlsessions/core"
	"github.com/sqlsessions/sqlsessions/core/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store { return core.NewMemoryStore() })
}

func TestZeroMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store { return new(core.MemoryStore) })
}

func TestCachingStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store {
		return core.NewCachingStore(core.NewMemoryStore(), core.CachingOptions{MaxEntries: 64})
	})
	// A cache smaller than the working set must still be correct.
	t.Run("TinyCache", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) core.Store {
			return core.NewCachingStore(core.NewMemoryStore(), core.CachingOptions{MaxEntries: 1})
		})
	})
}

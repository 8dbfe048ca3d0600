package identity

import (
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/storetest"
)

// TestMemoryCounterConformance: the counter of a store of one process counts as a shared
// store's does.
func TestMemoryCounterConformance(t *testing.T) {
	t.Parallel()
	storetest.RunFailureCounter(t, func(*testing.T) store.FailureCounter { return newMemoryCounter(time.Now) })
}

package memfile

import (
	"testing"

	"github.com/shmfs/shmfs/internal/testutil"
)

// TestMain runs the tests, or one of the child processes that the
// cross-process tests re-execute the test binary as.
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"growreader": childGrowReader, // growth_process_test.go
		"creator":    childCreator,    // growth_process_test.go
		"seqreader":  childSeqReader,  // seqlock_test.go
	})
}

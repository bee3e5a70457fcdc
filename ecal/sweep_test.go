package ecal

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
)

// Sweep removes the files of gateways whose process is gone (PID and
// start-time tag in the name) and keeps those of live ones.
func TestSweepRemovesOnlyDeadGatewaysFiles(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := cmd.Process.Pid // reaped: gone
	self := proc.Self()
	id := uint32(proc.RandomID())
	dead := fmt.Sprintf("%s%d_%08x_%08x", gatewayFilePrefix, deadPID, 12345, id)
	live := fmt.Sprintf("%s%d_%08x_%08x", gatewayFilePrefix, self.PID, self.Tag(), id)
	var deadFiles, liveFiles []string
	for _, base := range []string{dead, live} {
		for _, suffix := range []string{"", "_mtx", "_4242_evt", "_4242_ack_evt"} {
			p := "/dev/shm/" + base + suffix
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(p) })
			if base == dead {
				deadFiles = append(deadFiles, base+suffix)
			} else {
				liveFiles = append(liveFiles, base+suffix)
			}
		}
	}
	listed, err := Sweep(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range deadFiles {
		if !slices.Contains(listed, f) {
			t.Errorf("dry run does not list %s", f)
		}
		if _, err := os.Stat("/dev/shm/" + f); err != nil {
			t.Errorf("dry run removed %s", f)
		}
	}
	if _, err := Sweep(false); err != nil {
		t.Fatal(err)
	}
	for _, f := range deadFiles {
		if _, err := os.Stat("/dev/shm/" + f); !os.IsNotExist(err) {
			t.Errorf("%s of a dead gateway not removed", f)
		}
	}
	for _, f := range liveFiles {
		if _, err := os.Stat(filepath.Join("/dev/shm", f)); err != nil {
			t.Errorf("%s of a live gateway removed: %v", f, err)
		}
	}
}

package ecal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shmfs/shmfs/internal/proc"
)

// The gateway names its eCAL memory files ecal_sfgw_<pid>_<tag>_<id>: eCAL
// accepts any name, and this one tells whose it is (PID and the low 32 bits
// of its start time, as in internal/proc). Its mutex is <name>_mtx, the
// event pairs of its subscribers <name>_<pid>_evt and <name>_<pid>_ack_evt.
// A gateway that was killed leaves them; Sweep removes them.
const gatewayFilePrefix = "ecal_sfgw_"

// Sweep removes the /dev/shm files of eCAL publishers of gateways that are
// no longer running, and returns their names. dryRun only lists them.
func Sweep(dryRun bool) ([]string, error) {
	matches, err := filepath.Glob("/dev/shm/" + gatewayFilePrefix + "*")
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, path := range matches {
		name := filepath.Base(path)
		parts := strings.SplitN(strings.TrimPrefix(name, gatewayFilePrefix), "_", 3)
		if len(parts) < 3 {
			continue
		}
		pid, err1 := strconv.ParseInt(parts[0], 10, 32)
		tag, err2 := strconv.ParseUint(parts[1], 16, 32)
		if err1 != nil || err2 != nil || pid <= 0 {
			continue
		}
		if proc.AliveTag(int32(pid), uint32(tag)) {
			continue
		}
		if !dryRun {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				continue
			}
		}
		removed = append(removed, name)
	}
	return removed, nil
}

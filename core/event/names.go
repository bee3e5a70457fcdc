package event

import "github.com/shmfs/shmfs/internal/shmname"

// SndName names the event a memory file's writer sets when a new message is
// in memfile, for the subscriber process with proc.InstanceID() instance:
// memfile + "_" + 16 hex digits of instance + "_snd". eCAL uses the bare PID
// here; an instance id is unique across PID namespaces.
func SndName(memfile string, instance uint64) string {
	return memfile + "_" + shmname.Hex(instance) + "_snd"
}

// AckName names the event that subscriber process sets to acknowledge a
// message of memfile (memfile + "_" + hex instance + "_ack"); its Value
// carries the acknowledged clock.
func AckName(memfile string, instance uint64) string {
	return memfile + "_" + shmname.Hex(instance) + "_ack"
}

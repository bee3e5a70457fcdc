// Package proc identifies processes in a way that survives PID reuse, and
// tells whether such a process is still alive.
//
// A process is named by its PID together with its start time (field 22 of
// /proc/PID/stat, in clock ticks since boot). A PID that was reused by a new
// process has a different start time, so an Identity never matches it.
// Zombies count as dead: a killed child that its parent has not reaped yet
// holds no locks and reads no memory.
package proc

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoProcess reports that no live process has the given PID.
var ErrNoProcess = errors.New("proc: no such process")

// Identity names one process for as long as it lives.
type Identity struct {
	PID       int32
	StartTime uint64 // clock ticks since boot, /proc/PID/stat field 22
}

// Tag is the low 32 bits of the start time. Lock words that must hold an
// identity in one 64-bit atomic use PID and Tag; two processes with the same
// PID and the same Tag are ~impossible (same PID, start times 2^32 ticks apart).
func (id Identity) Tag() uint32 { return uint32(id.StartTime) }

// Pack returns the identity as one 64-bit word: PID in the low 32 bits, Tag in
// the high 32 bits. Zero means "nobody".
func (id Identity) Pack() uint64 { return uint64(uint32(id.PID)) | uint64(id.Tag())<<32 }

// Unpack reverses Pack. The returned identity has only the Tag part of the
// start time; compare it with AliveTag.
func Unpack(w uint64) (pid int32, tag uint32) { return int32(uint32(w)), uint32(w >> 32) }

func (id Identity) String() string { return fmt.Sprintf("pid %d (start %d)", id.PID, id.StartTime) }

// Alive reports whether the process named by id is running (not a zombie).
// It answers false only when the process is known to be gone: no such PID,
// another start time (PID reused), or a zombie. When /proc cannot be read
// (too many open files, ...) the answer is true: every caller would
// otherwise take over a live holder's lock or remove a live process's
// objects.
func (id Identity) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	st, state, err := Stat(int(id.PID))
	if err != nil {
		return !errors.Is(err, ErrNoProcess)
	}
	return st == id.StartTime && !deadState(state)
}

// AliveTag is Alive for an identity known only by PID and Tag.
func AliveTag(pid int32, tag uint32) bool {
	if pid <= 0 {
		return false
	}
	st, state, err := Stat(int(pid))
	if err != nil {
		return !errors.Is(err, ErrNoProcess)
	}
	return uint32(st) == tag && !deadState(state)
}

// UID returns the real uid of process pid (from /proc/PID/status).
func UID(pid int) (uint32, error) {
	c, err := ReadCreds(pid)
	return c.UIDs[0], err
}

// Creds are a process's credentials as /proc/PID/status shows them.
type Creds struct {
	UIDs   [4]uint32 // real, effective, saved, filesystem
	GIDs   [4]uint32 // real, effective, saved, filesystem
	Groups []uint32  // supplementary groups
}

// HasUID reports whether uid is one of the process's uids.
func (c Creds) HasUID(uid uint32) bool {
	for _, u := range c.UIDs {
		if u == uid {
			return true
		}
	}
	return false
}

// InGroup reports whether gid is one of the process's groups (primary or
// supplementary): whether group permissions of a file of group gid apply
// to it.
func (c Creds) InGroup(gid uint32) bool {
	if c.GIDs[1] == gid || c.GIDs[3] == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// ReadCreds returns the credentials of process pid (from /proc/PID/status,
// which every user may read).
func ReadCreds(pid int) (Creds, error) {
	var c Creds
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c, ErrNoProcess
		}
		return c, err
	}
	var haveUID, haveGID bool
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		switch key {
		case "Uid", "Gid":
			if len(f) != 4 {
				return c, fmt.Errorf("proc: malformed %s line in /proc/%d/status", key, pid)
			}
			dst := &c.UIDs
			if key == "Gid" {
				dst = &c.GIDs
			}
			for i := range f {
				v, err := strconv.ParseUint(f[i], 10, 32)
				if err != nil {
					return c, fmt.Errorf("proc: malformed %s line in /proc/%d/status", key, pid)
				}
				dst[i] = uint32(v)
			}
			haveUID = haveUID || key == "Uid"
			haveGID = haveGID || key == "Gid"
		case "Groups":
			for _, g := range f {
				if v, err := strconv.ParseUint(g, 10, 32); err == nil {
					c.Groups = append(c.Groups, uint32(v))
				}
			}
		}
	}
	if !haveUID || !haveGID {
		return c, fmt.Errorf("proc: no Uid or Gid line in /proc/%d/status", pid)
	}
	return c, nil
}

func deadState(s byte) bool { return s == 'Z' || s == 'X' || s == 'x' }

// Stat returns the start time and the state letter of process pid.
func Stat(pid int) (startTime uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return 0, 0, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return 0, 0, fmt.Errorf("proc: read stat of pid %d: %w", pid, err)
	}
	return parseStat(b)
}

// parseStat reads the state (field 3) and start time (field 22) of a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (uint64, byte, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errors.New("proc: malformed stat line")
	}
	fields := strings.Fields(string(b[i+2:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, errors.New("proc: short stat line")
	}
	st, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("proc: bad start time: %w", err)
	}
	return st, fields[0][0], nil
}

var self struct {
	once     sync.Once
	id       Identity
	instance uint64
	pidns    uint64
	err      error
}

func initSelf() {
	pid := os.Getpid()
	st, _, err := Stat(pid)
	if err != nil {
		self.err = err
	}
	self.id = Identity{PID: int32(pid), StartTime: st}
	self.instance = RandomID()
	var s unix.Stat_t
	if unix.Stat("/proc/self/ns/pid", &s) == nil {
		self.pidns = s.Ino
	}
}

// Self returns the identity of the calling process. It is computed once; a
// forked child (which Go does not do) would need its own.
func Self() Identity {
	self.once.Do(initSelf)
	return self.id
}

// InstanceID is a random 64-bit number chosen once per process. Names of
// per-process objects use it instead of the PID, so that processes in
// different PID namespaces sharing /dev/shm never collide.
func InstanceID() uint64 {
	self.once.Do(initSelf)
	return self.instance
}

// PIDNamespace returns the inode of the caller's PID namespace (0 if unknown).
// PIDs recorded in shared memory are meaningful only inside one namespace.
func PIDNamespace() uint64 {
	self.once.Do(initSelf)
	return self.pidns
}

// RandomID returns a non-zero random 64-bit number from crypto/rand.
func RandomID() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("proc: crypto/rand failed: " + err.Error()) // never fails on Linux ≥ 3.17
		}
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// MachineID returns /etc/machine-id, or the boot id when there is none; hosts
// are told apart by it, never by host name alone.
func MachineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"} {
		if b, err := os.ReadFile(p); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				return s
			}
		}
	}
	return ""
}

// BootID returns the kernel's boot id (changes on every boot).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Name returns the short command name of the calling process.
func Name() string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

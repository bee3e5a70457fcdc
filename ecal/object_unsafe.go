package ecal

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/ecal/glibc"
)

// eCAL 5.x on Linux keeps its named mutexes (<memfile>_mtx) and named events
// (<memfile>_<pid>_evt, <memfile>_<pid>_ack_evt) in 96-byte files in
// /dev/shm (struct named_mutex / named_event, alignas(8)):
//
//	 0  pthread_mutex_t (40 bytes, process-shared, normal)
//	40  pthread_cond_t  (48 bytes, process-shared, CLOCK_MONOTONIC)
//	88  uint8 flag: "locked" of a mutex, "set" of an event
//	89  padding
//
// The flag is read and written only while holding the pthread mutex.
// eCAL built with ECAL_USE_CLOCKLOCK_MUTEX uses a 40-byte robust mutex
// file instead; it is refused.
const (
	objectSize = 96
	objCond    = 40
	objFlag    = 88
	objMode    = 0o666 // eCAL's: peers of any user lock and signal
)

// object is one mapped eCAL named mutex or event.
type object struct {
	name string
	mem  []byte
	m    *glibc.Mutex
	c    *glibc.Cond
	flag *uint8
}

// shmPath returns /dev/shm/name after checking that name is a plain file
// name (names come from the network).
func shmPath(name string) (string, error) {
	if err := checkShmName(name); err != nil {
		return "", err
	}
	return "/dev/shm/" + name, nil
}

// openObject opens the object file name. With create it is created if
// missing (O_EXCL, mode 0666) and initialised under flock(LOCK_EX) as eCAL's
// named_event_open does, so that two processes opening it at once never
// initialise it twice. Without create a missing file is an error.
func openObject(name string, create bool, deadline time.Time) (o *object, created bool, err error) {
	path, err := shmPath(name)
	if err != nil {
		return nil, false, err
	}
	flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd := -1
	if create {
		fd, err = unix.Open(path, flags|unix.O_CREAT|unix.O_EXCL, objMode)
		if err == nil {
			created = true
			_ = unix.Fchmod(fd, objMode) // the umask must not narrow it
		}
	}
	if fd < 0 {
		fd, err = unix.Open(path, flags, 0)
		if err != nil {
			return nil, false, fmt.Errorf("ecal: open %s: %w", path, err)
		}
	}
	defer unix.Close(fd)
	if err := flockUntil(fd, deadline); err != nil {
		return nil, false, fmt.Errorf("ecal: lock %s: %w", path, err)
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, fmt.Errorf("ecal: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, false, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, path)
	}
	fresh := false
	switch st.Size {
	case 0:
		if !create {
			return nil, false, fmt.Errorf("%w: %s is empty (its creator has not initialised it)", ErrCorrupt, path)
		}
		if err := unix.Ftruncate(fd, objectSize); err != nil {
			return nil, false, fmt.Errorf("ecal: size %s: %w", path, err)
		}
		fresh = true
	case objectSize:
	case glibc.MutexSize:
		return nil, false, fmt.Errorf("%w: %s is a %d-byte robust mutex: eCAL built with ECAL_USE_CLOCKLOCK_MUTEX is not supported", ErrUnsupported, path, st.Size)
	default:
		return nil, false, fmt.Errorf("%w: %s has %d bytes, an eCAL 5.x mutex or event has %d", ErrUnsupported, path, st.Size, objectSize)
	}
	mem, err := unix.Mmap(fd, 0, objectSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, false, fmt.Errorf("ecal: map %s: %w", path, err)
	}
	if fresh {
		// What pthread_mutex_init and pthread_cond_init write for eCAL's
		// attributes (process-shared; CLOCK_MONOTONIC), and flag 0.
		_ = glibc.InitMutex(mem)
		_ = glibc.InitCond(mem[objCond:])
		mem[objFlag] = 0
	}
	o, err = newObject(name, mem)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return o, created, nil
}

func newObject(name string, mem []byte) (*object, error) {
	m, err := glibc.MutexAt(mem)
	if err != nil {
		return nil, err
	}
	c, err := glibc.CondAt(mem[objCond:])
	if err != nil {
		return nil, err
	}
	return &object{name: name, mem: mem, m: m, c: c, flag: (*uint8)(unsafe.Pointer(&mem[objFlag]))}, nil
}

// flockUntil takes flock(LOCK_EX) without blocking past deadline.
func flockUntil(fd int, deadline time.Time) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrTimeout
		}
		time.Sleep(time.Millisecond)
	}
}

// close unmaps the object; unlink also removes its name.
func (o *object) close(unlink bool) {
	if o == nil || o.mem == nil {
		return
	}
	_ = unix.Munmap(o.mem)
	o.mem = nil
	if unlink {
		_ = os.Remove("/dev/shm/" + o.name)
	}
}

// lockTimeout bounds taking the pthread mutex inside an object: its holders
// keep it for a few instructions, so a long wait means a dead holder.
const lockTimeout = time.Second

// set is named_event_set: lock, flag = 1, signal, unlock.
func (o *object) set() error {
	if err := o.m.Lock(time.Now().Add(lockTimeout)); err != nil {
		return o.stuck(err)
	}
	*o.flag = 1
	err := o.c.Signal(time.Now().Add(lockTimeout))
	o.m.Unlock()
	runtime.KeepAlive(o)
	return err
}

// tryWait is named_event_trywait: consume the flag if it is set.
func (o *object) tryWait() (bool, error) {
	if err := o.m.Lock(time.Now().Add(lockTimeout)); err != nil {
		return false, o.stuck(err)
	}
	set := *o.flag != 0
	*o.flag = 0
	o.m.Unlock()
	return set, nil
}

// wait is named_event_wait with a timeout: consume the flag, waiting on the
// condition variable until it is set, timeout passes or stop is closed.
func (o *object) wait(timeout time.Duration, stop <-chan struct{}) (bool, error) {
	deadline := time.Now().Add(timeout)
	if err := o.m.Lock(deadline.Add(lockTimeout)); err != nil {
		return false, o.stuck(err)
	}
	for *o.flag == 0 {
		woken, err := o.c.Wait(o.m, deadline, stop, time.Now().Add(timeout+lockTimeout))
		if err != nil {
			return false, o.stuck(err) // the relock failed: the mutex is not ours
		}
		if !woken {
			o.m.Unlock()
			return false, nil
		}
	}
	*o.flag = 0
	o.m.Unlock()
	return true, nil
}

// lock is named_mutex_lock with a timeout. eCAL waits on the condition
// variable for the flag to clear; here the flag is polled instead (lock,
// look, unlock, back off), so that this process never registers as a
// waiter in a condition variable that several processes wait on: a waiter
// killed while registered could stall the next signaller.
func (o *object) lock(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for spin := 0; ; spin++ {
		if err := o.m.Lock(deadline.Add(lockTimeout)); err != nil {
			return o.stuck(err)
		}
		if *o.flag == 0 {
			*o.flag = 1
			o.m.Unlock()
			return nil
		}
		o.m.Unlock()
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w: eCAL mutex %s held by another process for %v", ErrTimeout, o.name, timeout)
		}
		backoff(spin)
	}
}

// unlock is named_mutex_unlock: lock, flag = 0 and signal one waiter (an
// eCAL process waiting for the file), unlock.
func (o *object) unlock() error {
	if err := o.m.Lock(time.Now().Add(lockTimeout)); err != nil {
		return o.stuck(err)
	}
	var err error
	if *o.flag == 1 {
		*o.flag = 0
		err = o.c.Signal(time.Now().Add(lockTimeout))
	}
	o.m.Unlock()
	return err
}

// stuck explains a failure to take the pthread mutex of an object.
func (o *object) stuck(err error) error {
	if errors.Is(err, glibc.ErrTimeout) {
		if tid := o.m.Owner(); tid != 0 {
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d", tid)); serr != nil {
				return fmt.Errorf("%w: the pthread mutex of /dev/shm/%s is held by thread %d, which is gone: the object is unusable until its owner recreates it", ErrTimeout, o.name, tid)
			}
			return fmt.Errorf("%w: the pthread mutex of /dev/shm/%s is held by thread %d", ErrTimeout, o.name, tid)
		}
		return fmt.Errorf("%w: the pthread mutex of /dev/shm/%s stays locked", ErrTimeout, o.name)
	}
	return err
}

// backoff waits a little longer each round: yield first (the holder copies
// for microseconds), then sleep up to 200 µs.
func backoff(round int) {
	switch {
	case round < 16:
		runtime.Gosched()
	default:
		d := time.Duration(round-15) * 10 * time.Microsecond
		_ = unix.Nanosleep(&unix.Timespec{Nsec: int64(min(d, 200*time.Microsecond))}, nil)
	}
}

//go:build linux

package fanotify

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Access reports what the open that raised ev asks for: read (O_RDONLY or
// O_RDWR) and write (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC), and whether
// that could be told. fanotify does not pass the open flags on, so they
// are read from the system calls the process's threads are blocked in
// (/proc/PID/task/TID/syscall, and openat2's struct open_how from the
// thread's memory). Events name the process, not the thread, so every
// thread blocked in an open is looked at and their accesses combined: the
// stricter reading. Unknown (an open that is not a plain system call, such
// as io_uring's, or another architecture) must be taken as both.
func (ev *Event) Access() (read, write, known bool) {
	pid := strconv.Itoa(int(ev.PID))
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return false, false, false
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if r, w, k := openIntent(int32(tid), "/proc/"+pid+"/task/"+t.Name()+"/syscall"); k {
			read, write, known = read || r, write || w, true
		}
	}
	return read, write, known
}

// readSyscall reads a syscall file (a variable for tests).
var readSyscall = os.ReadFile

// runningRetries is how many more times a thread's syscall file is read
// when it says "running". A thread waiting for a permission verdict wakes
// each time the group answers any event, to see whether the answer is its
// own: read at that moment, it shows "running" though it is blocked in its
// open (seen as an exec taken for a write, now and then, while other
// events were answered).
const runningRetries = 5

// openIntent reads one thread's syscall file: whether it is in an open,
// and what that open asks for.
func openIntent(tid int32, path string) (read, write, known bool) {
	var f []string
	for try := 0; ; try++ {
		b, err := readSyscall(path)
		if err != nil {
			return false, false, false
		}
		f = strings.Fields(string(b))
		if len(f) > 0 && f[0] == "running" && try < runningRetries {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		break
	}
	if len(f) < 7 {
		return false, false, false // "running" or "-1 ...": not in a system call
	}
	nr, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return false, false, false
	}
	arg := func(i int) (uint64, bool) {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64)
		return v, err == nil
	}
	var flags uint64
	var ok bool
	switch nr {
	case sysOpen:
		flags, ok = arg(1)
	case sysOpenat, sysOpenByHandleAt:
		flags, ok = arg(2)
	case sysCreat:
		return false, true, true
	case sysExecve, sysExecveat:
		// The kernel opens the program (and its interpreter) to run
		// it: a read.
		return true, false, true
	case sysOpenat2:
		how, ok2 := arg(2)
		if !ok2 {
			return false, false, false
		}
		flags, ok = readU64(tid, how)
	default:
		return false, false, false
	}
	if !ok {
		return false, false, false
	}
	acc := flags & unix.O_ACCMODE
	return acc == unix.O_RDONLY || acc == unix.O_RDWR,
		acc == unix.O_WRONLY || acc == unix.O_RDWR || flags&(unix.O_CREAT|unix.O_TRUNC) != 0, true
}

// readU64 reads 8 bytes at addr in thread tid's memory.
func readU64(tid int32, addr uint64) (uint64, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(int(tid)) + "/mem")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(addr)); err != nil {
		return 0, false
	}
	return binary.NativeEndian.Uint64(b[:]), true
}

// SharedObject reports whether the file of a pending event is an ELF
// shared object or position-independent executable (e_type ET_DYN): what
// the dynamic loader opens to map code. It reads the header through the
// event's descriptor, which raises no event.
func sharedObject(fd int) bool {
	var h [18]byte
	n, err := unix.Pread(fd, h[:], 0)
	return err == nil && n == len(h) && string(h[:4]) == "\x7fELF" && binary.LittleEndian.Uint16(h[16:]) == 3
}

//go:build linux

package fanotify

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Write reports whether the open that raised ev asks for write access
// (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC), and whether that could be told.
// fanotify does not pass the open flags on, so they are read from the
// system call the process's thread is blocked in (/proc/PID/task/TID/
// syscall, and for openat2 its struct open_how from the thread's memory).
// Events name the process, not the thread: its main thread is looked at
// first, then the others; if several threads are opening at once, any
// open for writing makes the answer a write, the stricter reading.
func (ev *Event) Write() (write, known bool) {
	pid := strconv.Itoa(int(ev.PID))
	if w, k := openIntent(ev.PID, "/proc/"+pid+"/syscall"); k {
		return w, true
	}
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return false, false
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil || tid == int(ev.PID) {
			continue
		}
		if w, k := openIntent(int32(tid), "/proc/"+pid+"/task/"+t.Name()+"/syscall"); k {
			known = true
			if w {
				return true, true
			}
		}
	}
	return false, known
}

// openIntent reads one thread's syscall file: whether it is in an open,
// and whether that open asks to write.
func openIntent(tid int32, path string) (write, known bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, false
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return false, false // "running" or "-1 ...": not in a system call
	}
	nr, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return false, false
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
		return true, true
	case sysOpenat2:
		how, ok2 := arg(2)
		if !ok2 {
			return false, false
		}
		flags, ok = readU64(tid, how)
	default:
		return false, false
	}
	if !ok {
		return false, false
	}
	return flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC) != 0, true
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

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
// system call the thread is blocked in (/proc/TID/syscall, and for
// openat2 its struct open_how from /proc/TID/mem).
func (ev *Event) Write() (write, known bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(ev.TID)) + "/syscall")
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
		flags, ok = readU64(ev.TID, how)
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

//go:build linux

package host

import (
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapAllocator backs each instance's linear memory with its own mapping
// that reserves the memory's maximum size up front (address space only:
// PROT_NONE, MAP_NORESERVE) and makes pages accessible as the guest grows.
// wazero's default grows a Go slice by appending, which copies the whole
// memory and allocates a new one on the host's heap: a Go plugin whose
// heap grew by half a megabyte took over 50ms for that one call, longer
// than the call deadline, so a healthy plugin got a failure verdict.
// Here growth is an mprotect: the memory never moves and is never copied,
// untouched pages cost no RAM, and none of it is on the Go heap.
type mmapAllocator struct{}

func (mmapAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	// wazero never expects nil: a memory that cannot be mapped (none at
	// all, or the mapping refused) falls back to a heap slice.
	if max == 0 || max > 1<<32 {
		return &heapMemory{max: max}
	}
	b, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &heapMemory{max: max}
	}
	return &mmapMemory{buf: b}
}

// heapMemory is wazero's default behaviour: a Go slice grown by copying.
type heapMemory struct {
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	}
	return m.buf[:size:size]
}

func (m *heapMemory) Free() { m.buf = nil }

type mmapMemory struct {
	buf       []byte // the whole reservation
	committed uint64 // bytes made readable and writable
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	if size > m.committed {
		// Whole pages; linear memory sizes are multiples of 64 KiB.
		if err := unix.Mprotect(m.buf[m.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = size
	}
	return m.buf[:size:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		unix.Munmap(m.buf)
		m.buf = nil
	}
}

func memoryAllocator() experimental.MemoryAllocator { return mmapAllocator{} }

//go:build linux

package host

import (
	"testing"
	"unsafe"
)

// Growth never moves or copies the memory, new pages read as zero, and
// growth past the reservation fails instead of moving.
func TestMmapMemory(t *testing.T) {
	const page = 64 << 10
	lm := mmapAllocator{}.Allocate(page, 16*page)
	if lm == nil {
		t.Fatal("allocation failed")
	}
	defer lm.Free()
	b := lm.Reallocate(page)
	if len(b) != page {
		t.Fatalf("len %d", len(b))
	}
	base := unsafe.SliceData(b)
	for i := range b {
		b[i] = 0xaa
	}
	for n := 2; n <= 16; n++ {
		g := lm.Reallocate(uint64(n * page))
		if len(g) != n*page || unsafe.SliceData(g) != base {
			t.Fatalf("grow to %d pages: len %d, moved %v", n, len(g), unsafe.SliceData(g) != base)
		}
		if g[0] != 0xaa || g[page-1] != 0xaa {
			t.Fatal("contents lost")
		}
		for _, x := range g[(n-1)*page:] {
			if x != 0 {
				t.Fatal("a new page is not zero")
			}
		}
	}
	if g := lm.Reallocate(17 * page); g != nil {
		t.Fatal("grew past the reservation")
	}
	lm.Free()
	lm.Free() // idempotent
}

// A plugin runs on the mmap allocator: its memory is not on the Go heap.
func TestInstanceMemoryIsMapped(t *testing.T) {
	rt := newTestRuntime(t, Limits{})
	p := loadBehave(t, rt, "behave", 'a')
	s, err := p.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	before, _ := s.inst.mem.Read(0, 1)
	if _, ok := s.inst.mem.Grow(4); !ok {
		t.Fatal("grow failed")
	}
	after, _ := s.inst.mem.Read(0, 1)
	if &before[0] != &after[0] {
		t.Fatal("the memory moved when it grew")
	}
}

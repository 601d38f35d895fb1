//go:build linux

// Package proctrack follows process creation, image replacement and exit
// with eBPF raw tracepoints (sched_process_fork, sched_process_exec,
// sched_process_exit; C source in kernel/linux/bpf/proctrack.c), so the
// agent's process table learns of every process as the kernel creates it.
//
// Inheritance is exact in kernel terms: a fork event names the task that
// called fork or clone, which is the creator whatever the child's parent
// becomes later (double fork, setsid, a subreaper), and every process is
// named by (thread group id, start time), so a reused pid is a different
// process. Start is in clock ticks after boot, the unit of field 22 of
// /proc/PID/stat (kernel/linux/procfs), so processes found at start-up and
// processes tracked since compare equal.
//
// It imports neither host/ nor wazero.
package proctrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Kind is what happened to a process.
type Kind uint8

const (
	Fork Kind = 1 // a new process (not a new thread)
	Exec Kind = 2 // the process replaced its image
	Exit Kind = 3 // the process's last thread exited
)

func (k Kind) String() string {
	switch k {
	case Fork:
		return "fork"
	case Exec:
		return "exec"
	case Exit:
		return "exit"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Event is one process event.
type Event struct {
	Kind  Kind
	PID   uint32 // thread group id
	Start uint64 // clock ticks after boot
	// Exec: the image, as the kernel loaded it when the exec happened:
	// its path in the mount tree of the process's namespace ("" when the
	// walk did not reach the root; read /proc then), and its filesystem's
	// statfs magic.
	Path  string
	Magic uint64
	// Fork: the process that created this one, and its start.
	Creator      uint32
	CreatorStart uint64
}

// nsPerTick converts start_boottime (ns) to /proc's clock ticks: USER_HZ
// is 100 on every Linux architecture, part of the user-space ABI.
const nsPerTick = 1e9 / 100

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("process tracker closed")

// Tracker is the loaded and attached programs and their event stream.
type Tracker struct {
	objs  proctrackObjects
	links []link.Link
	rd    *ringbuf.Reader
	rec   ringbuf.Record // Read's, reused
	// use is held (read) by Drain and Read while they touch the ring,
	// and by Close (write), which unmaps it: closing while another
	// goroutine drains must give it ErrClosed, not a fault.
	use       sync.RWMutex
	closed    bool         // under use
	seq       *ebpf.Memory // the seq map, mapped; nil where it cannot be
	closeOnce sync.Once
	closeErr  error
	since     uint64 // see Since
}

// Options tune a Tracker. The zero value is the default.
type Options struct {
	// RingBytes is the ring buffer's size: a power of two and a multiple
	// of the page size; 0 means 4 MiB. A smaller ring loses events
	// sooner (Lost counts them).
	RingBytes int
}

// Start loads the programs, attaches them and starts collecting events.
// It needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) and a kernel
// with BTF, BPF ring buffers and bpf_loop (Linux 5.17 or later).
func Start(opts Options) (_ *Tracker, err error) {
	if n := opts.RingBytes; n != 0 && (n < os.Getpagesize() || n%os.Getpagesize() != 0 || n&(n-1) != 0 || n > 1<<30) {
		return nil, fmt.Errorf("ring buffer size %d: want a power of two, a multiple of the page size (%d), at most 1 GiB", n, os.Getpagesize())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lifting the memlock limit for eBPF maps: %w", err)
	}
	t := &Tracker{}
	defer func() {
		if err != nil {
			t.Close() // t, not the result: a failing return has set that to nil
		}
	}()
	spec, err := loadProctrack()
	if err != nil {
		return nil, fmt.Errorf("loading the process tracking programs: %w", err)
	}
	if opts.RingBytes != 0 {
		spec.Maps["events"].MaxEntries = uint32(opts.RingBytes)
	}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("loading the process tracking programs: %w", err)
	}
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_fork", t.objs.OnFork},
		{"sched_process_exec", t.objs.OnExec},
		{"sched_process_exit", t.objs.OnExit},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.name, Program: a.prog})
		if err != nil {
			return nil, fmt.Errorf("attaching to the %s tracepoint: %w", a.name, err)
		}
		t.links = append(t.links, l)
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &now); err != nil {
		return nil, fmt.Errorf("reading the boot-time clock: %w", err)
	}
	t.since = uint64(now.Nano()) / nsPerTick
	if t.rd, err = ringbuf.NewReader(t.objs.Events); err != nil {
		return nil, fmt.Errorf("reading the process events: %w", err)
	}
	if mem, err := t.objs.Seq.Memory(); err == nil {
		t.seq = mem
	}
	return t, nil
}

// The kernel does not wake the reader for each event: a wake-up per
// fork, exec and exit was most of what tracking cost a process storm
// (about 200 µs per fork+exec on a 2-core VM). User space drains the ring
// on its own clock (a tick is enough: the default 4 MiB ring holds about
// 100,000 forks or exits, or some 25,000 execs with their paths) and
// whenever a decision needs the table current, which it can tell by
// comparing Submitted with what it has applied. A ring a quarter full wakes a Read
// at once (the agent drains on its tick instead).

// Drain hands every event waiting in the ring buffer to f, in order,
// without waiting, until f returns false (that event counts as handed
// over). It returns how many it handed over; ErrClosed after Close. It
// must not run concurrently with itself or Read.
func (t *Tracker) Drain(f func(Event) bool) (int, error) {
	t.use.RLock()
	defer t.use.RUnlock()
	if t.closed {
		return 0, ErrClosed
	}
	return t.drain(f)
}

func (t *Tracker) drain(f func(Event) bool) (int, error) {
	n := 0
	if t.rd.AvailableBytes() == 0 {
		return 0, nil // the common case, without a system call
	}
	t.rd.SetDeadline(time.Unix(1, 0)) // in the past: read what is there
	for {
		err := t.rd.ReadInto(&t.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
			return n, nil // drained
		}
		if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return n, ErrClosed
		}
		if err != nil {
			return n, err
		}
		ev, ok := decode(t.rec.RawSample)
		if !ok {
			continue // not ours: every record is at least 32 bytes
		}
		n++
		if !f(ev) {
			return n, nil
		}
	}
}

// Read returns the next event, waiting until there is one (it looks every
// few milliseconds, or at once when the ring is a quarter full), or
// ErrClosed. It must not run concurrently with itself or Drain.
func (t *Tracker) Read() (Event, error) {
	for {
		ev, err := t.read()
		if err != errNone {
			return ev, err
		}
	}
}

var errNone = errors.New("no event yet")

// read is one look of Read: errNone when there was nothing to read.
func (t *Tracker) read() (Event, error) {
	t.use.RLock()
	defer t.use.RUnlock()
	if t.closed {
		return Event{}, ErrClosed
	}
	var got Event
	n, err := t.drain(func(ev Event) bool { got = ev; return false })
	if err != nil {
		return Event{}, err
	}
	if n == 1 {
		return got, nil
	}
	t.rd.SetDeadline(time.Now().Add(5 * time.Millisecond))
	err = t.rd.ReadInto(&t.rec)
	switch {
	case err == nil:
		if ev, ok := decode(t.rec.RawSample); ok {
			return ev, nil
		}
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
	case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
		return Event{}, ErrClosed
	default:
		return Event{}, err
	}
	return Event{}, errNone
}

func decode(b []byte) (Event, bool) {
	if len(b) < 32 {
		return Event{}, false
	}
	ev := Event{
		Kind:         Kind(binary.NativeEndian.Uint32(b[0:])),
		PID:          binary.NativeEndian.Uint32(b[4:]),
		Start:        binary.NativeEndian.Uint64(b[8:]) / nsPerTick,
		Creator:      binary.NativeEndian.Uint32(b[16:]),
		CreatorStart: binary.NativeEndian.Uint64(b[24:]) / nsPerTick,
	}
	if ev.Kind == Exec && len(b) >= 48 {
		// struct exec_event: magic, names_len, flags, names.
		ev.Magic = binary.NativeEndian.Uint64(b[32:])
		n := uint64(binary.NativeEndian.Uint32(b[40:]))
		flags := binary.NativeEndian.Uint32(b[44:])
		if flags&1 == 0 && n > 0 && n <= uint64(len(b)-48) {
			ev.Path = joinNames(b[48 : 48+n])
		}
	}
	return ev, true
}

// joinNames makes a path of the exec event's components, which come leaf
// first, each ended by a NUL.
func joinNames(b []byte) string {
	var names [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return "" // cut short: not a path to trust
		}
		names = append(names, b[:i])
		b = b[i+1:]
	}
	if len(names) == 0 {
		return ""
	}
	var p []byte
	for i := len(names) - 1; i >= 0; i-- {
		p = append(p, '/')
		p = append(p, names[i]...)
	}
	return string(p)
}

// Lost is the number of events the kernel dropped because the ring buffer
// was full (user space fell behind): the table may then be stale.
func (t *Tracker) Lost() (uint64, error) { return t.counter(1) }

// Close detaches the programs and releases the maps, once a Read or Drain
// in progress has returned (a Read waits at most 5 ms); later calls return
// ErrClosed. It is safe to call more than once.
func (t *Tracker) Close() error {
	t.closeOnce.Do(func() {
		t.use.Lock()
		defer t.use.Unlock()
		t.closed = true
		var errs []error
		if t.rd != nil {
			errs = append(errs, t.rd.Close()) // no Read or Drain runs: Close holds use
		}
		for _, l := range t.links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, t.objs.Close())
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// Since is when tracking began, in /proc's start-time units (clock ticks
// since boot). A process whose start time is later started while the
// programs were attached: its fork was reported, or counted by Lost.
func (t *Tracker) Since() uint64 { return t.since }

// Submitted is the number of events the kernel has put in the ring buffer
// so far (counted just before each becomes readable). A reader that has
// applied that many events has seen every process event up to now.
func (t *Tracker) Submitted() (uint64, error) { return t.counter(0) }

// counter reads seq[i], from the mapping when there is one.
func (t *Tracker) counter(i uint32) (uint64, error) {
	if t.seq == nil {
		var n uint64
		err := t.objs.Seq.Lookup(i, &n)
		return n, err
	}
	var b [8]byte
	if _, err := t.seq.ReadAt(b[:], int64(i)*8); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

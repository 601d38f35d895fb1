//go:build linux

// Package fanotify answers fanotify permission events (FAN_OPEN_PERM,
// FAN_OPEN_EXEC_PERM) through a handler, with the guarantees a permission
// hook must give whatever the handler does: every event is answered exactly
// once and within a deadline that does not depend on the handler, events
// about this process are allowed at once (it must never wait for itself),
// a full internal queue and a kernel queue overflow are counted and follow
// a configured verdict, and closing the listener releases every pending
// event (the kernel allows what a closed group did not answer).
//
// It imports neither host/ nor wazero: events go out as plain values and
// verdicts come back as booleans.
//
// The process that runs a Listener must not start programs from a marked
// mount. Go's os/exec forks with CLONE_VFORK, and the forking thread keeps
// its scheduler slot until the child's execve returns; that execve waits
// for this listener's answer, and a garbage collection that starts
// meanwhile stops every other goroutine, the reader included, until the
// slot is given back: a deadlock (seen in an experiment). The child also
// holds a copy of the group's descriptor until its execve completes, so
// killing the process does not release it either.
package fanotify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/abi"
)

// Kind is what the process is doing.
type Kind uint8

const (
	Open Kind = iota // open(2) of a file: FAN_OPEN_PERM
	Exec             // execve(2), or the ELF interpreter or a library opened for execution: FAN_OPEN_EXEC_PERM
)

func (k Kind) String() string {
	if k == Exec {
		return "exec"
	}
	return "open"
}

// Event is one permission request.
type Event struct {
	Kind Kind
	PID  int32      // the process asking (its thread group id)
	Path string     // the file, from the event's descriptor
	FS   abi.FSKind // the file's filesystem kind: its marks' when they agree, else fstatfs on the descriptor
	// Behind, for Config.Fast only, is how many events read with this
	// one wait for the reader after it: a Fast that may take a while
	// (still bounded) should take it only when none do.
	Behind int
	fd     int // the event's descriptor, valid while the handler runs
	l      *Listener
	// described: Path and FS are set. The handler always gets them; Fast
	// gets the event without, and calls Describe if it needs them.
	described bool
}

// Describe fills in Path and FS, once: a readlinkat of the descriptor (the
// costliest part of a cached answer, 1.2-1.7 µs) and, unless every mark
// has the same filesystem kind, an fstatfs. Only while the handler or
// Fast runs.
func (ev *Event) Describe() {
	if ev.described {
		return
	}
	ev.described = true
	ev.Path = ev.l.pathOf(ev.fd)
	if ev.l.oneKind.Load() {
		ev.FS = ev.l.kind
	} else {
		ev.FS = fsKind(ev.fd)
	}
}

// Ignore makes the kernel stop asking about this file for events of this
// kind (an inode ignore mark): every later open (or exec) of it is
// allowed without a round trip, until the file is modified (the kernel
// then clears the mark) or FlushIgnores. Call it only for an answer that
// holds for every process, whatever it is doing, for as long as the mark
// may live; only while the handler (or Fast) runs.
func (ev *Event) Ignore() error {
	mask := uint64(unix.FAN_OPEN_PERM)
	if ev.Kind == Exec {
		mask = unix.FAN_OPEN_EXEC_PERM
	}
	l := ev.l
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return os.ErrClosed
	}
	// The event's own descriptor names the inode (an empty pathname is
	// passed as NULL), so a rename since the event cannot redirect the
	// mark.
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, mask, ev.fd, ""); err != nil {
		return fmt.Errorf("fanotify_mark (ignore): %w", err)
	}
	l.stats.ignored.Add(1)
	return nil
}

// FlushIgnores removes every ignore mark Ignore made (every inode mark of
// the group; the mount and filesystem marks stay): the kernel asks about
// those files again.
func (l *Listener) FlushIgnores() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return os.ErrClosed
	}
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		return fmt.Errorf("fanotify_mark (flush): %w", err)
	}
	// The flush took the doorbell's mark too: put it back.
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_ADD, unix.FAN_MODIFY, unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(l.bell)); err != nil {
		return fmt.Errorf("fanotify_mark (doorbell, after a flush): %w", err)
	}
	l.stats.flushes.Add(1)
	return nil
}

// SharedObject reports whether the file is an ELF shared object (or PIE
// executable), as the dynamic loader opens to map code. It reads the
// file's header, so call it only when the answer matters; only while the
// handler runs.
func (ev *Event) SharedObject() bool { return sharedObject(ev.fd) }

// Handler decides an event: true allows. It may take as long as it likes;
// the listener answers with Config.DeadlineVerdict when the deadline
// passes first, and the handler's late verdict is then dropped.
type Handler func(ctx context.Context, ev *Event) (allow bool)

// Config configures a Listener. Zero fields take their defaults.
type Config struct {
	// Deadline bounds the time from reading an event to answering it
	// (default 100ms).
	Deadline time.Duration
	// DeadlineAllow is the verdict when the handler misses the deadline
	// (default false: deny), unless DeadlineVerdict gives one.
	DeadlineAllow bool
	// DeadlineVerdict, if set, chooses the deadline verdict per event
	// (ok true), such as by the process's zone; it runs on the reader
	// when the event is queued, so it must answer at once.
	DeadlineVerdict func(ev *Event) (allow, ok bool)
	// QueueFullAllow is the verdict for an event that finds every worker
	// busy and the queue full (default false: deny).
	QueueFullAllow bool
	// Workers run the handler concurrently (default 4); Queue events wait
	// for one (default 1024).
	Workers, Queue int
	// Stuck, if set, is called once when the watchdog finds events
	// waiting in the kernel that the reader has not taken for
	// StuckAfter (default 2s): a stuck decision loop. The listener then
	// closes itself, so the kernel allows what waits instead of freezing
	// every process that touches a marked file.
	Stuck      func(waited time.Duration)
	StuckAfter time.Duration
	// Fast, if set, is tried on the reader itself before an event is
	// queued: it answers from what it has at hand (a cache) or says it
	// cannot (ok false), and then the event goes to the workers and the
	// handler. Answering inline saves two thread handoffs per event. ev
	// is the reader's own and valid only during the call; its Path and FS
	// are set only once it calls ev.Describe.
	Fast func(ev *Event) (allow, ok bool)
}

func (c *Config) defaults() {
	if c.Deadline <= 0 {
		c.Deadline = 100 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = 2 * time.Second
	}
}

// Stats are cumulative counters.
type Stats struct {
	Events    uint64 // permission events read
	Allowed   uint64
	Denied    uint64
	Self      uint64 // events about this process, allowed at once
	Deadline  uint64 // answered with the deadline verdict
	QueueFull uint64 // answered with the queue-full verdict
	Overflow  uint64 // kernel queue overflows (events lost by the kernel)
	Stuck     uint64 // the watchdog found the reader stuck and closed the group
	Ignored   uint64 // ignore marks made (Event.Ignore)
	Flushes   uint64 // FlushIgnores done
}

// Listener is one fanotify permission group.
type Listener struct {
	cfg   Config
	fd    int // the group's descriptor (blocking reads)
	bell  int // a memfd the group watches for FAN_MODIFY: Close writes to it to wake a blocked read
	fdDir int // /proc/self/fd, for reading events' paths without walking to it each time
	self  int32
	queue chan *pending
	stats struct {
		events, allowed, denied, self, deadline, queueFull, overflow, stuck, ignored, flushes atomic.Uint64
	}
	lastRead  atomic.Int64           // monotonic ns of the reader's last return from read
	busySince atomic.Int64           // monotonic ns the reader started on what it read; 0 when back to reading
	stall     atomic.Pointer[func()] // tests only: called after each read
	wmu       sync.Mutex             // serializes responses with each other and with Close
	closed    bool                   // under wmu: no more responses (the group is closed, or about to be)
	running   bool                   // under wmu: Run is running (its workers may still describe events)
	inSys     bool                   // under wmu: the reader is in read on fd, so fd stays open until it returns
	fdClosed  bool                   // under wmu: fd is closed (its number may be reused)
	closeErr  error
	lastPath  atomic.Pointer[string] // pathOf's last answer
	scratch   Event                  // the reader's: the event it is describing and trying Fast on
	// The filesystem kind of every mark, when they all have the same one
	// (oneKind); set by Mark and MarkFilesystem, which come before Run.
	kind    abi.FSKind
	kindSet bool
	oneKind atomic.Bool
}

// pending is an event waiting for its answer.
type pending struct {
	// refs counts who still needs fd: the response and, for a queued
	// event, the worker's handler. The last one closes it, so a deadline
	// answer does not close the descriptor under a handler still using
	// it (its number would be reused by the next event at once).
	refs          atomic.Int32
	ev            Event
	fd            int // the event's descriptor
	answered      atomic.Bool
	deadlineAllow bool        // the verdict if the deadline passes first
	timer         *time.Timer // set before the event is queued; answer never reads it
}

// New creates a permission group. It needs CAP_SYS_ADMIN. Nothing is
// marked yet: see Mark.
func New(cfg Config) (*Listener, error) {
	cfg.defaults()
	// Blocking reads: a thread blocked in read is woken by the event
	// itself, the least a wake-up can cost (no poll before each read, no
	// runtime poller).
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_UNLIMITED_QUEUE,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	// The doorbell: nothing else wakes a thread blocked in read on the
	// group (closing the descriptor does not; signals restart the read),
	// so the group watches a file of its own, and Close modifies it.
	bell, err := doorbell(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	fdDir, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		unix.Close(bell)
		return nil, fmt.Errorf("opening /proc/self/fd: %w", err)
	}
	return &Listener{
		cfg: cfg, fd: fd, bell: bell, fdDir: fdDir, self: int32(os.Getpid()),
		queue: make(chan *pending, cfg.Queue),
	}, nil
}

// doorbell makes the group's doorbell: a memfd marked for FAN_MODIFY, and
// returns a descriptor that writes to it. The memfd's own descriptor is a
// kernel-internal ("pseudo") file, which raises no fsnotify events on
// recent kernels, so the writes go through a second open of it. It rings
// once to prove that a write wakes the group, and takes that event.
func doorbell(group int) (int, error) {
	m, err := unix.MemfdCreate("lineage-fanotify-doorbell", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("doorbell: memfd_create: %w", err)
	}
	defer unix.Close(m)
	path := "/proc/self/fd/" + strconv.Itoa(m)
	if err := unix.FanotifyMark(group, unix.FAN_MARK_ADD, unix.FAN_MODIFY, unix.AT_FDCWD, path); err != nil {
		return -1, fmt.Errorf("doorbell: fanotify_mark: %w", err)
	}
	bell, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("doorbell: %w", err)
	}
	fail := func(why string) (int, error) {
		unix.Close(bell)
		return -1, errors.New("doorbell: " + why)
	}
	if _, err := unix.Pwrite(bell, []byte{1}, 0); err != nil {
		return fail("write: " + err.Error())
	}
	fds := []unix.PollFd{{Fd: int32(group), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 1000); err != nil || n != 1 {
		return fail("a write raised no event")
	}
	var buf [256]byte
	n, err := unix.Read(group, buf[:])
	if err != nil || n < int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) {
		return fail("reading its event")
	}
	if fd := int32(binary.NativeEndian.Uint32(buf[16:])); fd >= 0 {
		unix.Close(int(fd))
	}
	return bell, nil
}

// Mask bits for Mark.
const (
	MaskOpen = unix.FAN_OPEN_PERM
	MaskExec = unix.FAN_OPEN_EXEC_PERM
)

// Mark watches the mount that holds path, for the events in mask. Mark
// only mounts the listener is meant to guard: a listener that stops
// answering blocks every process that touches a marked file until it is
// closed.
func (l *Listener) Mark(path string, mask uint64) error {
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, mask, unix.AT_FDCWD, path); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", path, err)
	}
	return l.marked(path)
}

// marked notes the filesystem kind of a mark's superblock. A mount or
// filesystem mark stays on one superblock, and permission events come
// only from these marks, so while every mark has the same kind an event's
// kind is known without a system call (fstatfs costs 0.4 µs an event, and
// a round trip to the server on some network filesystems).
func (l *Listener) marked(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	k := FSKindOf(st.Type)
	switch {
	case !l.kindSet:
		l.kind, l.kindSet = k, true
		l.oneKind.Store(true)
	case l.kind != k:
		l.oneKind.Store(false)
	}
	return nil
}

// MarkFilesystem watches the whole filesystem that holds path, for the
// events in mask: every mount of it, in every mount namespace (a bind
// mount or a container's copy of the mount tree included), which a mount
// mark does not cover.
func (l *Listener) MarkFilesystem(path string, mask uint64) error {
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, path); err != nil {
		return fmt.Errorf("fanotify_mark (filesystem) %s: %w", path, err)
	}
	return l.marked(path)
}

// Stats returns the counters.
func (l *Listener) Stats() Stats {
	s := &l.stats
	return Stats{
		Events: s.events.Load(), Allowed: s.allowed.Load(), Denied: s.denied.Load(), Self: s.self.Load(),
		Deadline: s.deadline.Load(), QueueFull: s.queueFull.Load(), Overflow: s.overflow.Load(), Stuck: s.stuck.Load(),
		Ignored: s.ignored.Load(), Flushes: s.flushes.Load(),
	}
}

// Run reads and answers events until ctx ends or the listener is closed.
// It returns nil then, or the error that stopped it.
func (l *Listener) Run(ctx context.Context, h Handler) error {
	l.wmu.Lock()
	l.running = true
	l.wmu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		l.wmu.Lock()
		l.running = false
		if l.fdClosed {
			l.closeFdDir()
		}
		l.wmu.Unlock()
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < l.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.work(wctx, h)
		}()
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchdog(wctx)
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := l.read(buf)
		now := monotonic()
		l.lastRead.Store(now)
		l.busySince.Store(now)
		if f := l.stall.Load(); f != nil {
			(*f)() // tests: a stuck reader
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading fanotify events: %w", err)
		}
		l.dispatch(buf[:n])
		l.busySince.Store(0)
	}
}

// read waits for events and reads them, blocked in read(2) on this
// goroutine's thread. While the reader is in read the group's descriptor
// stays open (Close rings the doorbell, and the reader closes the group
// when read returns); at any other time Close closes it at once, so a
// reader stuck in a handler never keeps events from being released. It
// returns os.ErrClosed once the listener is closed.
func (l *Listener) read(buf []byte) (int, error) {
	l.wmu.Lock()
	if l.closed {
		l.wmu.Unlock()
		return 0, os.ErrClosed
	}
	l.inSys = true
	l.wmu.Unlock()
	l.lastRead.Store(monotonic())
	n, err := unix.Read(l.fd, buf)
	for err == unix.EINTR {
		n, err = unix.Read(l.fd, buf)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.inSys = false
	if l.closed {
		// Events read in the same call as the close: the kernel allows
		// them when the group goes; their descriptors are ours to close.
		if err == nil {
			closeEventFDs(buf[:n])
		}
		l.closeFD()
		return 0, os.ErrClosed
	}
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, errors.New("read returned no events")
	}
	return n, nil
}

var start = time.Now()

func monotonic() int64 { return int64(time.Since(start)) }

// watchdog checks every quarter second whether the reader has held events
// it read for StuckAfter without handing them on, or events wait in the
// kernel (the group's descriptor polls readable) while the reader has not
// come back to read for StuckAfter. Either means the loop is stuck.
func (l *Listener) watchdog(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var readySince int64 // when the descriptor was first seen readable with no read since
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
		l.wmu.Lock() // the descriptor stays open (and ours) while polled
		if l.closed {
			l.wmu.Unlock()
			return
		}
		n, err := unix.Poll(fds, 0)
		l.wmu.Unlock()
		var waited time.Duration
		now := monotonic()
		if busy := l.busySince.Load(); busy != 0 {
			// Events read and not yet handed on: nothing answers them
			// until the reader comes back.
			waited = time.Duration(now - busy)
		} else if err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			// Events waiting in the kernel. A reader idle in read is
			// about to be woken, so only events that stay unread, with
			// no read returning, for StuckAfter count.
			if readySince == 0 || l.lastRead.Load() > readySince {
				readySince = now
			}
			waited = time.Duration(now - readySince)
		} else {
			readySince = 0
		}
		if waited < l.cfg.StuckAfter {
			continue
		}
		l.stats.stuck.Add(1)
		if l.cfg.Stuck != nil {
			l.cfg.Stuck(waited)
		}
		l.Close()
		return
	}
}

// dispatch parses a read's worth of events and hands each to a worker.
func (l *Listener) dispatch(b []byte) {
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(b) >= metaLen {
		m := unix.FanotifyEventMetadata{
			Event_len: binary.NativeEndian.Uint32(b[0:]),
			Vers:      b[4],
			Mask:      binary.NativeEndian.Uint64(b[8:]),
			Fd:        int32(binary.NativeEndian.Uint32(b[16:])),
			Pid:       int32(binary.NativeEndian.Uint32(b[20:])),
		}
		if m.Vers != unix.FANOTIFY_METADATA_VERSION || m.Event_len < uint32(metaLen) || int(m.Event_len) > len(b) {
			// A format this code does not know: nothing in the buffer can
			// be trusted. Closing the group answers its events (the
			// kernel allows them) and stops the listener; counted as an
			// overflow.
			l.stats.overflow.Add(1)
			l.Close()
			return
		}
		b = b[m.Event_len:]
		if m.Mask&unix.FAN_Q_OVERFLOW != 0 || m.Fd == unix.FAN_NOFD {
			l.stats.overflow.Add(1)
			continue
		}
		if m.Mask&(unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM) == 0 {
			unix.Close(int(m.Fd)) // the doorbell: nothing to answer
			continue
		}
		l.stats.events.Add(1)
		fd := int(m.Fd)
		kind := Open
		if m.Mask&unix.FAN_OPEN_EXEC_PERM != 0 {
			kind = Exec
		}
		if m.Pid == l.self {
			l.stats.self.Add(1)
			l.respond(fd, true, nil)
			continue
		}
		// Until an event is queued only the reader has it, so it is
		// described in the reader's own Event (no allocation per event on
		// the fast path) and answered without the pending machinery.
		ev := &l.scratch
		*ev = Event{PID: m.Pid, Kind: kind}
		if l.cfg.Fast != nil {
			ev.Behind = countBehind(b)
			ev.fd, ev.l = fd, l
			if allow, ok := l.cfg.Fast(ev); ok {
				l.respond(fd, allow, nil)
				continue
			}
		}
		p := &pending{fd: fd, ev: *ev, deadlineAllow: l.cfg.DeadlineAllow}
		p.refs.Store(2) // the response, and the worker
		p.ev.Behind = 0
		if l.cfg.DeadlineVerdict != nil {
			if allow, ok := l.cfg.DeadlineVerdict(ev); ok {
				p.deadlineAllow = allow
			}
		}
		// The deadline runs from now, whatever happens to the event.
		p.timer = time.AfterFunc(l.cfg.Deadline, func() { l.answer(p, p.deadlineAllow, &l.stats.deadline) })
		select {
		case l.queue <- p:
		default:
			l.answer(p, l.cfg.QueueFullAllow, &l.stats.queueFull)
			p.timer.Stop()
			l.release(p) // no worker will have it
		}
	}
}

// closeEventFDs closes the descriptors of the events in b, unanswered.
func closeEventFDs(b []byte) {
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(b) >= metaLen {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if fd := int32(binary.NativeEndian.Uint32(b[16:])); fd >= 0 {
			unix.Close(int(fd))
		}
		if n < metaLen || n > len(b) {
			return
		}
		b = b[n:]
	}
}

// countBehind counts the events in b, the rest of a read: an estimate
// from the fixed size of permission events' metadata, which is all this
// group reads.
func countBehind(b []byte) int {
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	return len(b) / metaLen
}

func (l *Listener) work(ctx context.Context, h Handler) {
	for {
		select {
		case <-ctx.Done():
			// Events left in the queue are answered by the deadline
			// timers, or by the kernel when the group closes; a worker
			// releases the descriptors it will never use.
			for {
				select {
				case p := <-l.queue:
					l.release(p)
				default:
					return
				}
			}
		case p := <-l.queue:
			if !p.answered.Load() { // else the deadline passed while it waited
				l.describe(p)
				allow := h(ctx, &p.ev)
				l.answer(p, allow, nil)
				// The timer was set before the event was queued, so
				// reading it here is ordered after that; if it fired
				// meanwhile, its answer came first and this one was
				// dropped.
				p.timer.Stop()
			}
			l.release(p)
		}
	}
}

// release drops one reference to p's descriptor, closing it with the last.
func (l *Listener) release(p *pending) {
	if p.refs.Add(-1) == 0 {
		unix.Close(p.fd)
	}
}

// answer writes the verdict for p unless it was answered already, and
// counts it (and in extra, if given).
func (l *Listener) answer(p *pending, allow bool, extra *atomic.Uint64) {
	if !p.answered.CompareAndSwap(false, true) {
		return
	}
	l.write(p.fd, allow, extra)
	l.release(p)
}

// respond answers an event the reader holds alone and closes fd.
func (l *Listener) respond(fd int, allow bool, extra *atomic.Uint64) {
	l.write(fd, allow, extra)
	unix.Close(fd)
}

// write writes the verdict for the event with descriptor fd and counts it
// (and in extra, if given). Each event is answered once: by the reader, or
// through answer.
func (l *Listener) write(fd int, allow bool, extra *atomic.Uint64) {
	resp := uint32(unix.FAN_DENY)
	if allow {
		resp = unix.FAN_ALLOW
		l.stats.allowed.Add(1)
	} else {
		l.stats.denied.Add(1)
	}
	if extra != nil {
		extra.Add(1)
	}
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(fd))
	binary.NativeEndian.PutUint32(b[4:], resp)
	l.wmu.Lock()
	// Once Close has run, the kernel allows the event when the group's
	// last reference goes (at once, or when the reader returns from
	// read), and l.fd may name another file by then: write nothing.
	if !l.closed {
		// A response never blocks (the kernel finds the event under a
		// spinlock and wakes its process), so the write skips the
		// runtime's system-call bookkeeping (entersyscall and
		// exitsyscall) on every event.
		unix.RawSyscall(unix.SYS_WRITE, uintptr(l.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	}
	l.wmu.Unlock()
}

// Close closes the group: the kernel allows every event not yet answered,
// so no process stays blocked. It is safe to call more than once.
func (l *Listener) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	if l.inSys {
		// The reader is in read on the descriptor: ring the doorbell, and
		// it closes the group when read returns (at once).
		if _, err := unix.Pwrite(l.bell, []byte{1}, 0); err == nil {
			return nil
		}
		// Cannot happen (a memfd of our own); should it, closing now
		// leaves the group open until the next event ends the read.
	}
	l.closeFD()
	return l.closeErr
}

// closeFD closes the group's descriptor (the kernel then allows every
// event not yet answered) and the doorbell; under wmu.
func (l *Listener) closeFD() {
	if l.fdClosed {
		return
	}
	l.fdClosed = true
	l.closeErr = unix.Close(l.fd)
	unix.Close(l.bell)
	if !l.running {
		l.closeFdDir()
	}
}

// closeFdDir closes fdDir once nothing can describe an event any more:
// at Close if Run never ran, else when Run returns; under wmu.
func (l *Listener) closeFdDir() {
	if l.fdDir >= 0 {
		unix.Close(l.fdDir)
		l.fdDir = -1
	}
}

// describe fills in the event's path and filesystem kind, once (by one
// worker, or already by the reader's Fast).
func (l *Listener) describe(p *pending) {
	p.ev.fd, p.ev.l = p.fd, l
	p.ev.Describe()
}

// pathOf reads the path of an event's descriptor from /proc/self/fd ("" if
// it cannot). Storms open the same file again and again, so the last path
// read is kept and returned again while the bytes are the same: no
// allocation then.
func (l *Listener) pathOf(fd int) string {
	var name [20]byte
	var buf [unix.PathMax]byte
	n, err := unix.Readlinkat(l.fdDir, string(strconv.AppendInt(name[:0], int64(fd), 10)), buf[:])
	if err != nil || n <= 0 || n >= len(buf) {
		return ""
	}
	if last := l.lastPath.Load(); last != nil && *last == string(buf[:n]) {
		return *last
	}
	path := string(buf[:n])
	l.lastPath.Store(&path)
	return path
}

// fsKind classifies the filesystem of an open file.
func fsKind(fd int) abi.FSKind {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil {
		return abi.FSLocal
	}
	return FSKindOf(st.Type)
}

// FSKindOf classifies a filesystem by its statfs magic number: network
// filesystems (NFS, SMB/CIFS, Coda, AFS, 9p, Ceph) are network; removable
// media are not told apart here yet, so everything else is local.
func FSKindOf(magic int64) abi.FSKind {
	switch uint32(magic) {
	case unix.NFS_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC, 0xfe534d42 /* SMB2 */, unix.SMB_SUPER_MAGIC,
		unix.CODA_SUPER_MAGIC, unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC, unix.V9FS_MAGIC, unix.CEPH_SUPER_MAGIC:
		return abi.FSNetwork
	}
	return abi.FSLocal
}

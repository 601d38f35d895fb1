//go:build linux

// Package agent is the Linux enforcement agent behind `host run`: it
// connects the kernel layers (kernel/linux/...) to the engine (host/).
// On start it begins tracking processes with eBPF, rebuilds the process
// table from /proc (with ancestry where the creator is still running),
// then answers fanotify permission events on the configured mounts
// through the engine: executions as process.exec, opens for writing as
// file.write, ELF shared objects opened for reading as code.load, other
// opens as file.read.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/kernel/linux/fanotify"
	"lineage.dev/lineage/kernel/linux/procfs"
	"lineage.dev/lineage/kernel/linux/proctrack"
)

// Config configures an Agent.
type Config struct {
	Marks          []string // mount points to guard
	Filesystems    []string // paths whose whole filesystems to guard
	Deadline       time.Duration
	DeadlineAllow  bool
	QueueFullAllow bool
	Queue, Workers int
	// NoIgnoreMarks turns off the kernel-side cache: answers that hold
	// for every process and every file become fanotify ignore marks
	// otherwise (see maybeIgnore).
	NoIgnoreMarks bool
	// Log receives the audit log (one line per denial; per decision at
	// debug level) and the agent's own messages.
	Log hclog.Logger

	ringBytes int // the tracker's ring buffer (tests: small, to lose events); 0: its default
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	eng     *host.Engine
	log     hclog.Logger
	tracker *proctrack.Tracker
	fan     *fanotify.Listener
	self    uint32

	rebuilt atomic.Bool
	stuck   atomic.Bool // the watchdog released the marks

	// pids maps a running process's pid to its identity, kept by the
	// rebuild, the tracker's events and the slow path of subject; under
	// mu. applied counts the tracker's events applied: when it equals
	// the kernel's count of events submitted, every process event that
	// happened before now is in the table.
	pids map[uint32]host.ProcessID
	// pending holds execs applied to the pid map but not yet classified
	// by the plugins; under pidsMu. Classifying is a plugin call (about
	// 50 µs cold, on the reader in an exec storm), so it waits until
	// something needs the zone: a decision for the process, a fork by it,
	// another exec of it, or the tracking loop's next tick. A process
	// that exits first is never classified.
	pending map[uint32]pendingExec
	applied atomic.Uint64
	// lostSeen is the tracker's count of lost events (the ring buffer
	// was full) that a resync from /proc has made up for. While the
	// kernel's count is higher the table may miss a fork, an exec or an
	// exit, and every decision takes the slow path.
	lostSeen atomic.Uint64
	// trackMu serializes draining the tracker's ring buffer and applying
	// its events, which the tracking loop does on a tick, a worker when a
	// decision waits for them, and the fanotify reader when that is cheap
	// (catchUpInline). Lock order: trackMu, then mu.
	trackMu sync.Mutex
	nudge   chan struct{} // wakes the tracking loop
	// stash is an event catchUpInline took from the ring but left for
	// another goroutine because applying it calls a plugin; under
	// trackMu, applied before anything else.
	stash *proctrack.Event
	// resyncNotBefore is when the next resync may run after a partial
	// scan; under trackMu.
	resyncNotBefore time.Time
	// doomed are the processes a resync found gone; they leave the table
	// after the next drain, once the events they raised before the scan
	// (a fork by one of them, say) are applied. Under mu.
	doomed []host.ProcessID
	// When a failed resync, and a process given the failure zone for a
	// lost creator, were last logged (UnixNano; see warnOnce).
	resyncWarned, untracedWarned atomic.Int64

	// ignMu guards the ignore marks' bookkeeping: flushAt is when the
	// first of them must go (0: none live), and ignoreOff is set when the
	// kernel refused one (until the next flush).
	ignMu      sync.Mutex
	flushAt    time.Time
	flushTimer *time.Timer // fires at flushAt, whatever the tracking loop is doing
	ignoreOff  bool
	// mu serializes changes to the engine's process table (the tracker's
	// events, the rebuild and the slow path of subject), which may call
	// plugins and read /proc; the fanotify reader only ever tries it
	// (catchUpInline), and then calls no plugin. pidsMu
	// and statsMu guard only their maps and counters.
	mu       sync.Mutex
	pidsMu   sync.RWMutex
	statsMu  sync.Mutex
	stats    Stats
	trackErr chan error
}

// Stats are the agent's counters.
type Stats struct {
	Rebuilt, RebuiltUnknown int    // processes found at start; of them, with unknown ancestry
	Forks, Execs, Exits     uint64 // process events applied
	Decisions, Denials      uint64
	Fast                    uint64 // decisions answered on the listener's reader, from the cache
	Ignored, IgnoreFlushes  uint64 // ignore marks made; flushes of them (at expiry)
	Unresolved              uint64 // events whose process could not be found; the failure verdict applied
	Resyncs                 uint64 // times the table was brought up to date from /proc after the tracker lost events
	Untraced                uint64 // processes given the failure zone: started while tracked, their creator's event lost
}

// Start starts tracking processes, rebuilds the table from /proc and marks
// the configured mounts. Events are answered once Run runs. Close undoes
// everything, also after a failed Start.
func Start(ctx context.Context, eng *host.Engine, cfg Config) (a *Agent, err error) {
	if len(cfg.Marks) == 0 && len(cfg.Filesystems) == 0 {
		return nil, errors.New("nothing to guard (agent.marks and agent.filesystems are empty)")
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	a = &Agent{cfg: cfg, eng: eng, log: cfg.Log, self: uint32(os.Getpid()), trackErr: make(chan error, 1),
		pids: map[uint32]host.ProcessID{}, pending: map[uint32]pendingExec{}, nudge: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	// Track first, so that no process created during the scan is missed.
	if a.tracker, err = proctrack.Start(proctrack.Options{RingBytes: cfg.ringBytes}); err != nil {
		return nil, fmt.Errorf("process tracking: %w", err)
	}
	if err := a.rebuild(ctx); err != nil {
		return nil, fmt.Errorf("rebuilding the process table from /proc: %w", err)
	}
	a.rebuilt.Store(true)
	// What happened during the scan waits in the ring buffer and is
	// applied over it, in order, from the first drain on.
	go a.track(ctx)
	a.fan, err = fanotify.New(fanotify.Config{
		Deadline: cfg.Deadline, DeadlineAllow: cfg.DeadlineAllow, QueueFullAllow: cfg.QueueFullAllow,
		Queue: cfg.Queue, Workers: cfg.Workers,
		Fast: a.fast, DeadlineVerdict: a.deadlineVerdict,
		Stuck: func(waited time.Duration) {
			a.stuck.Store(true)
			a.log.Error("decision loop stuck: events waited unread, so the marks are released and the agent stops", "waited", waited)
		},
	})
	if err != nil {
		return nil, err
	}
	for _, m := range cfg.Marks {
		if err := a.fan.Mark(m, fanotify.MaskOpen|fanotify.MaskExec); err != nil {
			return nil, err
		}
	}
	for _, m := range cfg.Filesystems {
		if err := a.fan.MarkFilesystem(m, fanotify.MaskOpen|fanotify.MaskExec); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Run answers permission events until ctx ends. A failure of process
// tracking also ends it.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.fan.Run(ctx, a.decide) }()
	select {
	case err := <-errc:
		if err == nil && a.stuck.Load() {
			return errors.New("the decision loop was stuck; the watchdog released every event (restart the agent)")
		}
		return err
	case err := <-a.trackErr:
		cancel()
		<-errc
		return fmt.Errorf("process tracking stopped: %w", err)
	}
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	return a.stats
}

// Fanotify returns the permission layer's counters.
func (a *Agent) Fanotify() fanotify.Stats { return a.fan.Stats() }

// Close releases the marks (every pending event is allowed by the kernel
// when the group closes) and the eBPF programs.
func (a *Agent) Close() error {
	a.ignMu.Lock()
	if a.flushTimer != nil {
		a.flushTimer.Stop()
	}
	a.ignMu.Unlock()
	var errs []error
	if a.fan != nil {
		errs = append(errs, a.fan.Close())
	}
	if a.tracker != nil {
		errs = append(errs, a.tracker.Close())
	}
	return errors.Join(errs...)
}

// drainEvery is how often the tracking loop drains the ring buffer when
// no decision asks for it sooner.
const drainEvery = 5 * time.Millisecond

// track keeps the process table current: it drains the tracker's ring
// buffer every drainEvery, and at once when nudged.
func (a *Agent) track(ctx context.Context) {
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		if err := a.catchUp(ctx); err != nil {
			if !errors.Is(err, proctrack.ErrClosed) {
				a.trackErr <- err
			}
			return
		}
		a.reapDoomed()
		if lost, err := a.tracker.Lost(); err == nil && lost != a.lostSeen.Load() {
			a.resync(ctx)
		}
		a.resolveAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.nudge:
		}
	}
}

// catchUp applies every event waiting in the ring buffer.
func (a *Agent) catchUp(ctx context.Context) error {
	a.trackMu.Lock()
	defer a.trackMu.Unlock()
	return a.catchUpLocked(ctx)
}

// catchUpLocked is catchUp under trackMu.
func (a *Agent) catchUpLocked(ctx context.Context) error {
	if ev := a.stash; ev != nil {
		a.stash = nil
		a.mu.Lock()
		a.apply(ctx, *ev)
		a.mu.Unlock()
		a.applied.Add(1)
	}
	_, err := a.tracker.Drain(func(ev proctrack.Event) bool {
		a.mu.Lock()
		a.apply(ctx, ev)
		a.mu.Unlock()
		a.applied.Add(1)
		return true
	})
	return err
}

// Bounds on the catching up the fanotify reader does itself.
const (
	inlineEvents = 64
	inlineTime   = time.Millisecond
)

// catchUpInline is catchUp on the fanotify reader, which must neither wait
// nor call plugins (the event's deadline has not started): it gives up at
// once if anyone else holds the table, after inlineEvents events or
// inlineTime, and at the first event whose application would call a
// plugin, which it stashes for the tracking loop or a worker. It reports
// whether the ring was drained.
func (a *Agent) catchUpInline(ctx context.Context) bool {
	if !a.trackMu.TryLock() {
		return false
	}
	defer a.trackMu.Unlock()
	if a.stash != nil || !a.mu.TryLock() {
		return false
	}
	defer a.mu.Unlock()
	drained := true
	stop := time.Now().Add(inlineTime)
	n := 0
	_, err := a.tracker.Drain(func(ev proctrack.Event) bool {
		if a.needsPlugin(ev) {
			a.stash, drained = &ev, false
			return false
		}
		a.apply(ctx, ev)
		a.applied.Add(1)
		n++
		if n >= inlineEvents || time.Now().After(stop) {
			drained = false
			return false
		}
		return true
	})
	return err == nil && drained
}

func (a *Agent) wake() {
	select {
	case a.nudge <- struct{}{}:
	default:
	}
}

// rebuild enters every running process into the table, creators first.
func (a *Agent) rebuild(ctx context.Context) error {
	ps, err := procfs.Scan("/proc")
	if err != nil && len(ps) == 0 {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	entered, unknown := a.enter(ctx, ps)
	a.count(func(s *Stats) { s.Rebuilt, s.RebuiltUnknown = entered, unknown })
	if err != nil {
		a.log.Warn("some processes could not be read", "error", err)
	}
	return nil
}

// enter brings the table up to date with ps, a scan of /proc, creators
// first: a process the table does not hold is entered as the child of its
// creator when that is known and held, else with unknown ancestry; one
// whose image differs from the table's exec'd in place. It returns how
// many processes it entered, and how many of them with unknown ancestry.
// Under a.mu.
func (a *Agent) enter(ctx context.Context, ps []procfs.Process) (entered, unknown int) {
	start := make(map[uint32]uint64, len(ps))
	for _, p := range ps {
		start[p.PID] = p.Start
	}
	for _, n := range procfs.Tree(ps) {
		id := host.ProcessID{PID: n.PID, Start: n.Start}
		exe := n.Exe
		if exe == "" {
			exe = "[" + n.Comm + "]"
		}
		a.setPid(id)
		creator := a.eng.Process(host.ProcessID{PID: n.PPID, Start: start[n.PPID]})
		if !n.CreatorKnown {
			creator = nil
		}
		cur := a.eng.Process(id)
		switch {
		case cur != nil && ancestryLost(cur) && creator != nil:
			// In the failure zone because a creator was unknown (a lost
			// event); the scan knows this one's now.
		case cur != nil:
			if cur.Exe != exe && n.Exe != "" {
				fs := fsKindOfPath(exe)
				if _, err := a.eng.ExecInPlace(ctx, id, exe, fs); err != nil {
					a.unknownCreator(ctx, id, exe, fs, id.Start, n.PPID)
				}
			}
			continue
		}
		fs := fsKindOfPath(exe)
		if creator != nil {
			if _, err := a.eng.Start(ctx, id, creator.ID, exe, fs); err == nil {
				entered++
				continue
			}
		}
		a.unknownCreator(ctx, id, exe, fs, id.Start, n.PPID)
		entered++
		unknown++
	}
	return entered, unknown
}

// unknownCreator records a process whose creator the table cannot give.
// born is the start time of the process whose creation went unseen: that
// process itself, or its creator. Born before tracking began, it was
// missed by the scan or outlived its creator, and the process is
// classified by its executable, as one found at start. Born since, the
// event that named its creator was lost, and judging it by its executable
// would let any process that execs a system program while events are lost
// pass for a service: it gets the failure zone. Under a.mu.
//
// Kernel threads and what they start (usermode helpers such as modprobe,
// forked by kernel workers the table never holds) are outside this rule:
// parent is the creator's pid (or /proc's parent), checked for a kernel
// thread.
func (a *Agent) unknownCreator(ctx context.Context, id host.ProcessID, exe string, fs abi.FSKind, born uint64, parent uint32) {
	if born > a.tracker.Since() && !isKernelThread(parent) {
		a.eng.Untraced(id, exe)
		a.count(func(s *Stats) { s.Untraced++ })
		a.warnOnce(&a.untracedWarned, "a process started while tracked has no known creator (the event naming it was lost, or is late): the failure zone applies (logged once a minute; see Stats.Untraced)",
			"pid", id.PID, "exe", exe)
		return
	}
	a.eng.Exist(ctx, id, exe, fs)
}

// ancestryLost reports whether p's zone comes from a process recorded with
// its creator lost (Engine.Untraced): itself, or the image it replaced.
func ancestryLost(p *host.Process) bool {
	return p.Rule == host.RuleAncestryLost || (p.Origin != nil && p.Origin.Rule == host.RuleAncestryLost)
}

// isKernelThread reports whether pid is a kernel thread now.
func isKernelThread(pid uint32) bool {
	if pid == 2 { // kthreadd
		return true
	}
	p, err := procfs.Read("/proc", pid)
	return err == nil && p.Kernel
}

// resync makes up for process events the tracker lost (its ring buffer was
// full): the table is brought up to date from a scan of /proc, as at start.
// Exits lost leave processes the scan does not find, which go; forks lost
// leave processes it finds that the table does not hold, which are entered
// (from their creator when it is alive and known, else with unknown
// ancestry); execs lost leave images that differ from /proc's, which are
// re-classified as execs in place. Events raised during the scan wait in
// the ring and are applied over it afterwards, as at start. Decisions take
// the slow path (/proc) until it is done.
func (a *Agent) resync(ctx context.Context) {
	a.trackMu.Lock()
	defer a.trackMu.Unlock()
	lost, err := a.tracker.Lost()
	seen := a.lostSeen.Load()
	if err != nil || lost == seen || time.Now().Before(a.resyncNotBefore) {
		return
	}
	// Apply what the ring holds first: those events are older than the
	// scan, and one applied over it could undo what the scan found (a
	// fork applied after the scan re-entered the child with its
	// creator's image, though its exec was lost). What is raised from
	// here on is newer, and a loss behind it moves Lost past lost, which
	// calls for another resync.
	if err := a.catchUpLocked(ctx); err != nil {
		return // the tracking loop sees the error on its next drain
	}
	ps, scanErr := procfs.Scan("/proc")
	if scanErr != nil && len(ps) == 0 {
		a.resyncNotBefore = time.Now().Add(time.Second)
		a.warnOnce(&a.resyncWarned, "process events were lost and /proc could not be read; decisions stay on the slow path", "error", scanErr)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Images first, so that the comparison with /proc is with the latest.
	a.resolveAllLocked(ctx)
	live := make(map[uint32]uint64, len(ps))
	for _, p := range ps {
		if !p.Zombie { // exited: a zombie only waits to be reaped
			live[p.PID] = p.Start
		}
	}
	// a.pids changes only under a.mu, which this holds: a snapshot is
	// exact, and /proc is read without blocking the fanotify reader.
	a.pidsMu.RLock()
	held := make([]host.ProcessID, 0, len(a.pids))
	for _, id := range a.pids {
		held = append(held, id)
	}
	a.pidsMu.RUnlock()
	var gone []host.ProcessID
	for _, id := range held {
		pid := id.PID
		start, ok := live[pid]
		if ok && start == id.Start {
			continue
		}
		if !ok && scanErr != nil {
			// The scan skipped some processes: only one /proc says is
			// gone, is.
			if p, err := procfs.Read("/proc", pid); err == nil && p.Start == id.Start && !p.Zombie {
				continue
			} else if err != nil && !errors.Is(err, procfs.ErrGone) {
				continue
			}
		}
		gone = append(gone, id)
	}
	// They go after the next drain: a fork by one of them raised before
	// the scan may still wait in the ring, and needs its creator.
	a.doomed = append(a.doomed, gone...)
	entered, unknown := a.enter(ctx, ps)
	if scanErr != nil {
		// Some processes could not be read: their images may still be
		// stale, so decisions stay on the slow path until a full scan,
		// tried again in a second.
		a.resyncNotBefore = time.Now().Add(time.Second)
		a.warnOnce(&a.resyncWarned, "process events were lost and some processes could not be read from /proc; decisions stay on the slow path", "error", scanErr)
		return
	}
	a.lostSeen.Store(lost)
	a.count(func(s *Stats) { s.Resyncs++ })
	a.log.Warn("process events were lost (the tracker's ring buffer was full): the process table was brought up to date from /proc",
		"lost", lost-seen, "exited", len(gone), "entered", entered, "unknown_ancestry", unknown)
}

// reapDoomed removes the processes the last resync found gone, now that
// the events raised before its scan are applied. A process whose exit was
// applied meanwhile, or whose pid another process took, is left alone.
func (a *Agent) reapDoomed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range a.doomed {
		a.pidsMu.Lock()
		if a.pids[id.PID] == id {
			delete(a.pids, id.PID)
			if a.pending[id.PID].id == id {
				delete(a.pending, id.PID)
			}
		}
		a.pidsMu.Unlock()
		a.eng.Exit(id)
	}
	a.doomed = a.doomed[:0]
}

// warnOnce logs a warning at most once a minute per *last (UnixNano of
// the last one).
func (a *Agent) warnOnce(last *atomic.Int64, msg string, args ...any) {
	if now := time.Now().UnixNano(); now-last.Load() >= int64(time.Minute) {
		last.Store(now)
		a.log.Warn(msg, args...)
	}
}

// unknownImage names an executable whose path could not be read: no
// policy finds it in system space or on a list.
const unknownImage = "[unreadable executable]"

// pendingExec is an exec whose image is known and not yet classified.
type pendingExec struct {
	id  host.ProcessID
	exe string
	fs  abi.FSKind
}

// apply applies one tracker event; under a.mu.
func (a *Agent) apply(ctx context.Context, ev proctrack.Event) {
	id := host.ProcessID{PID: ev.PID, Start: ev.Start}
	switch ev.Kind {
	case proctrack.Fork:
		a.count(func(s *Stats) { s.Forks++ })
		// The child inherits what its creator is now: its own exec first.
		a.resolve(ctx, ev.Creator)
		a.setPid(id)
		// Exact: it replaces what the rebuild or a decision's slow path
		// guessed from /proc (a later exec event re-applies the image).
		creator := host.ProcessID{PID: ev.Creator, Start: ev.CreatorStart}
		if _, err := a.eng.Fork(id, creator); err != nil {
			// The table does not hold the creator: it predates tracking
			// and was missed by the scan (it exited meanwhile), or its
			// own fork was lost.
			exe := exeOf(ev.PID)
			a.unknownCreator(ctx, id, exe, fsKindOfPath(exe), ev.CreatorStart, ev.Creator)
		}
	case proctrack.Exec:
		a.count(func(s *Stats) { s.Execs++ })
		// An earlier exec of the same process is this one's creator (an
		// image replaced in place keeps its zone as creator).
		a.resolve(ctx, ev.PID)
		// The image the kernel loaded, carried in the event: right even if
		// the process has exec'd again since. /proc only when the kernel
		// could not walk the path.
		exe, fs := ev.Path, fanotify.FSKindOf(int64(ev.Magic))
		if exe == "" {
			if exe = exeOf(ev.PID); exe != "" {
				fs = fsKindOfPath(exe)
			} else {
				// Neither the kernel's walk nor /proc gave a path (gone
				// already, or a path too long to read): the image is
				// unknown, which is not the image it had.
				exe, fs = unknownImage, abi.FSLocal
			}
		}
		a.pidsMu.Lock()
		a.pids[ev.PID] = id
		a.pending[ev.PID] = pendingExec{id: id, exe: exe, fs: fs}
		a.pidsMu.Unlock()
	case proctrack.Exit:
		a.count(func(s *Stats) { s.Exits++ })
		a.eng.Exit(id) // the last thread exited
		a.pidsMu.Lock()
		if a.pids[ev.PID] == id {
			delete(a.pids, ev.PID)
		}
		if a.pending[ev.PID].id == id {
			delete(a.pending, ev.PID) // never needed
		}
		a.pidsMu.Unlock()
	}
}

// needsPlugin reports whether applying ev would call a plugin: a fork by a
// process whose exec is not classified yet, or by one the table does not
// hold (classified from scratch), or a second exec before the first is
// classified. Under a.mu.
func (a *Agent) needsPlugin(ev proctrack.Event) bool {
	a.pidsMu.RLock()
	defer a.pidsMu.RUnlock()
	switch ev.Kind {
	case proctrack.Fork:
		if _, ok := a.pending[ev.Creator]; ok {
			return true
		}
		return a.eng.Process(host.ProcessID{PID: ev.Creator, Start: ev.CreatorStart}) == nil
	case proctrack.Exec:
		_, ok := a.pending[ev.PID]
		return ok
	}
	return false
}

// resolve classifies pid's pending exec, if it has one; under a.mu.
func (a *Agent) resolve(ctx context.Context, pid uint32) {
	a.pidsMu.RLock()
	p, ok := a.pending[pid]
	a.pidsMu.RUnlock()
	if !ok {
		return
	}
	if _, err := a.eng.ExecInPlace(ctx, p.id, p.exe, p.fs); err != nil {
		// The table never held the process: its fork went unseen.
		a.unknownCreator(ctx, p.id, p.exe, p.fs, p.id.Start, ppidOf(p.id.PID))
	}
	a.pidsMu.Lock()
	if a.pending[pid] == p {
		delete(a.pending, pid)
	}
	a.pidsMu.Unlock()
}

// resolveAll classifies every pending exec.
func (a *Agent) resolveAll(ctx context.Context) {
	a.pidsMu.RLock()
	n := len(a.pending)
	a.pidsMu.RUnlock()
	if n == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resolveAllLocked(ctx)
}

// resolveAllLocked is resolveAll under a.mu.
func (a *Agent) resolveAllLocked(ctx context.Context) {
	a.pidsMu.RLock()
	pids := make([]uint32, 0, len(a.pending))
	for pid := range a.pending {
		pids = append(pids, pid)
	}
	a.pidsMu.RUnlock()
	for _, pid := range pids {
		a.resolve(ctx, pid)
	}
}

// subject finds the process of a permission event: by its start time in
// /proc, so a reused pid is never mistaken for an old process. Process
// events may still be on their way from the tracker when a process asks
// for something, so the table is brought up to date from /proc first: a
// process it does not hold yet is entered (from its parent, if that is
// known), and one whose image differs from /proc's is re-classified as
// an exec in place. The tracker's own events then find it done.
func (a *Agent) subject(ctx context.Context, pid int32) (host.ProcessID, bool) {
	// Fast path: once every process event raised before this permission
	// event is applied, the pid map is exact, and the process's identity
	// and current image are the table's. The kernel writes a process's
	// fork and exec events before that process can raise a permission
	// event, so waiting until the ring buffer is drained and applied
	// orders them.
	if a.caughtUp(ctx) {
		id, ok, pending := a.pidOf(uint32(pid))
		if ok && pending {
			a.mu.Lock()
			a.resolve(ctx, uint32(pid))
			a.mu.Unlock()
		}
		if ok && a.eng.Process(id) != nil {
			return id, true
		}
	}
	return a.subjectFromProc(ctx, pid)
}

// caughtUp brings the table up to date with the tracker, if it can: it
// applies what waits in the ring buffer itself, then, for an event
// counted but not yet readable (the kernel counts each just before it
// commits it), waits a little.
func (a *Agent) caughtUp(ctx context.Context) bool {
	giveUp := time.Now().Add(catchUpWait)
	for {
		if a.upToDate() {
			return true
		}
		if lost, err := a.tracker.Lost(); err != nil || lost != a.lostSeen.Load() {
			return false // waiting cannot help until a resync: /proc it is
		}
		if err := a.catchUp(ctx); err != nil || time.Now().After(giveUp) {
			return a.upToDate()
		}
		runtime.Gosched()
	}
}

// catchUpWait bounds how long a decision waits for the tracker's events
// before it reads the process from /proc instead.
const catchUpWait = 2 * time.Millisecond

// upToDate reports whether every process event the kernel has submitted
// is applied. The kernel counts a process's fork and exec events before
// that process can raise a permission event, so when this holds for a
// permission event, the process's identity and image in the table are
// current.
func (a *Agent) upToDate() bool {
	n, err := a.tracker.Submitted()
	if err != nil || n != a.applied.Load() {
		return false
	}
	// After a loss the table may miss a fork, an exec or an exit until
	// the tracking loop resyncs it from /proc: decisions meanwhile take
	// the slow path, which checks /proc.
	lost, err := a.tracker.Lost()
	return err == nil && lost == a.lostSeen.Load()
}

// subjectFromProc is subject's slow path, from /proc.
func (a *Agent) subjectFromProc(ctx context.Context, pid int32) (host.ProcessID, bool) {
	p, err := procfs.Read("/proc", uint32(pid))
	if err != nil {
		return host.ProcessID{}, false
	}
	id := host.ProcessID{PID: p.PID, Start: p.Start}
	exe := p.Exe
	switch {
	case exe == "" && p.Kernel:
		exe = "[" + p.Comm + "]"
	case exe == "":
		// A user process whose executable cannot be read: its name is
		// one it chose (prctl), so it is not used; fail closed.
		return host.ProcessID{}, false
	}
	if cur := a.eng.Process(id); cur != nil && cur.Exe == exe {
		return id, true
	}
	if lost, err := a.tracker.Lost(); err == nil && lost == a.lostSeen.Load() && a.eng.Process(id) == nil && !p.Kernel {
		// Nothing was lost, so the process's fork is on its way: one
		// more drain, waiting for the table if need be, before /proc
		// has to guess its creator.
		if a.catchUp(ctx) == nil {
			if cur := a.eng.Process(id); cur != nil && cur.Exe == exe {
				return id, true
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resolve(ctx, uint32(pid)) // an exec the tracker reported first
	a.setPid(id)
	cur := a.eng.Process(id)
	if cur == nil {
		parent, err := procfs.Read("/proc", p.PPID)
		if err == nil && parent.Start <= p.Start && p.PPID != 1 {
			cur, _ = a.eng.Fork(id, host.ProcessID{PID: parent.PID, Start: parent.Start})
		}
	}
	switch {
	case cur == nil:
		a.unknownCreator(ctx, id, exe, fsKindOfPath(exe), id.Start, p.PPID)
	case cur.Exe != exe:
		if _, err := a.eng.ExecInPlace(ctx, id, exe, fsKindOfPath(exe)); err != nil {
			a.unknownCreator(ctx, id, exe, fsKindOfPath(exe), id.Start, p.PPID)
		}
	}
	return id, true
}

// decide answers one permission event through the engine.
func (a *Agent) decide(ctx context.Context, ev *fanotify.Event) bool {
	if ev.Path == "" {
		// The file's path could not be read: nothing to decide on.
		a.count(func(s *Stats) { s.Unresolved++ })
		a.log.Warn("deny: the file's path could not be read", "pid", ev.PID)
		return false
	}
	id, ok := a.subject(ctx, ev.PID)
	if !ok {
		// The process is gone: nothing is waiting for the answer.
		a.count(func(s *Stats) { s.Unresolved++ })
		return false
	}
	req := host.Request{Subject: id, DecideRequest: abi.DecideRequest{Object: ev.Path, FS: ev.FS}}
	var d host.Decision
	var err error
	if ev.Kind == fanotify.Exec {
		req.Op = abi.OpProcessExec
		if err = a.eng.DecideInto(ctx, &req, &d); err == nil && d.Verdict == abi.Allow {
			a.maybeIgnore(ev, []host.Decision{d})
		}
	} else {
		err = a.decideOpen(ctx, ev, &req, &d)
	}
	if err != nil {
		a.log.Error("no decision", "pid", ev.PID, "op", req.Op.String(), "object", ev.Path, "error", err)
		a.count(func(s *Stats) { s.Unresolved++ })
		return false
	}
	allow := d.Effective() == abi.Allow
	a.count(func(s *Stats) {
		s.Decisions++
		if d.Verdict == abi.Deny {
			s.Denials++
		}
	})
	if d.Verdict == abi.Deny || a.log.IsDebug() {
		a.audit(&req, &d)
	}
	return allow
}

// fast answers an event on the listener's reader when everything it needs
// is at hand, without waiting and without calling a plugin: the tracker
// caught up (draining the ring here when that needs no plugin), the
// process in the pid map and classified, and cached allow decisions that
// agree whatever the open turns out to be. Anything else (a miss, a denial, which is
// audited with its exact op) goes to the workers and decide.
func (a *Agent) fast(ev *fanotify.Event) (allow, ok bool) {
	if !a.upToDate() && !(ev.Behind == 0 && a.catchUpInline(context.Background()) && a.upToDate()) {
		// The process's own fork or exec may be among the events not
		// applied yet. The reader applies them itself when nothing else
		// it read waits behind this event and the table is free;
		// otherwise the tracking loop is woken and a worker waits.
		a.wake()
		return false, false
	}
	ctx := context.Background()
	id, known, pending := a.pidOf(uint32(ev.PID))
	if !known {
		return false, false
	}
	if pending {
		// Its exec is not classified yet: a plugin call, which a worker
		// makes (the reader calls no plugin).
		a.wake()
		return false, false
	}
	var ds [3]host.Decision
	ops := []abi.Op{abi.OpProcessExec}
	if ev.Kind == fanotify.Open {
		ops = []abi.Op{abi.OpFileRead, abi.OpFileWrite, abi.OpCodeLoad}
	}
	// Without the path first: answers for any object of their op (the
	// zones plugin gives them to the system zone for every file op) hold
	// whatever the file, and the path costs a system call. A lookup with
	// no object can only find those.
	req := host.Request{Subject: id}
	cached := func(anyObject bool) bool {
		for i, op := range ops {
			req.Op = op
			hit, err := a.eng.DecideCachedInto(ctx, &req, &ds[i])
			if err != nil || !hit || ds[i].Effective() != abi.Allow || ds[i].Verdict != abi.Allow ||
				(anyObject && ds[i].Scope.Object != abi.ObjectAny) {
				return false
			}
		}
		return true
	}
	if !cached(true) {
		ev.Describe()
		if ev.Path == "" {
			return false, false
		}
		req.Object, req.FS = ev.Path, ev.FS
		if !cached(false) {
			return false, false
		}
	}
	a.maybeIgnore(ev, ds[:len(ops)])
	a.count(func(s *Stats) { s.Decisions++; s.Fast++ })
	if a.log.IsDebug() {
		ev.Describe()
		req.Op, req.Object, req.FS = ops[0], ev.Path, ev.FS
		a.audit(&req, &ds[0])
	}
	return true, true
}

// ignoreMinimum is the least time an answer must have left to become an
// ignore mark, and ignoreMargin how long before the answer's expiry the
// mark goes (the flush runs on the tracking loop's tick).
const (
	ignoreMinimum = time.Second
	ignoreMargin  = 50 * time.Millisecond
)

// maybeIgnore turns an allowed event into a kernel-side cache entry (a
// fanotify ignore mark on the file's inode, for this kind of event) when
// that is sound: every decision the event could need (read, write and
// code.load for an open, whatever its flags, which fanotify does not
// tell; process.exec for an exec) is an allow, not an audit-mode pass,
// whose scope is every subject and every object of its op. Such an
// answer holds whatever process opens the file, under whatever path
// (renames and hard links included) and on whatever filesystem, so a mark
// on the inode is as true as the answer, for as long as the answer lives:
// the kernel clears the mark when the file is modified, and the agent
// flushes the marks before the first of their answers expires. Scopes
// narrower than that are never marks: a prefix or exact scope is about a
// path, and a rename of the file, or of any directory above it, changes
// the path without touching the inode; a zone scope is about who asks,
// and fanotify cannot ignore per process. The reference policy's answers
// are all per zone, so with it nothing becomes a mark.
func (a *Agent) maybeIgnore(ev *fanotify.Event, ds []host.Decision) {
	if a.cfg.NoIgnoreMarks {
		return
	}
	left := time.Duration(1<<63 - 1)
	for i := range ds {
		d := &ds[i]
		if d.Verdict != abi.Allow || d.Failure || d.Scope.Subject != abi.SubjectAll || d.Scope.Object != abi.ObjectAny {
			return
		}
		left = min(left, a.eng.Remaining(d))
	}
	if left < ignoreMinimum {
		return
	}
	until := time.Now().Add(left - ignoreMargin)
	a.ignMu.Lock()
	defer a.ignMu.Unlock()
	if a.ignoreOff {
		return
	}
	if err := ev.Ignore(); err != nil {
		// Out of marks (fs.fanotify.max_user_marks), most likely: stop
		// until the next flush, in a minute at the latest; events keep
		// being decided as before.
		a.ignoreOff = true
		a.log.Warn("no more ignore marks until the next flush", "error", err)
		until = time.Now().Add(time.Minute)
		if a.flushAt.IsZero() || until.Before(a.flushAt) {
			a.scheduleFlush(until)
		}
		return
	}
	if a.flushAt.IsZero() || until.Before(a.flushAt) {
		a.scheduleFlush(until)
	}
	a.count(func(s *Stats) { s.Ignored++ })
}

// scheduleFlush moves the next flush to t; under ignMu. A timer of its own
// runs it, so a busy tracking loop cannot make a mark outlive its answer.
func (a *Agent) scheduleFlush(t time.Time) {
	a.flushAt = t
	d := time.Until(t)
	if a.flushTimer == nil {
		a.flushTimer = time.AfterFunc(d, a.flushExpiredIgnores)
		return
	}
	a.flushTimer.Reset(d)
}

// flushExpiredIgnores removes every ignore mark once the first of them is
// due. All go at once (fanotify flushes inode marks as a whole); each
// file's next event makes its mark again if its answer still holds.
func (a *Agent) flushExpiredIgnores() {
	a.ignMu.Lock()
	defer a.ignMu.Unlock()
	if a.flushAt.IsZero() {
		return
	}
	if d := time.Until(a.flushAt); d > 0 {
		a.flushTimer.Reset(d) // rescheduled after a flush while this waited for ignMu
		return
	}
	if err := a.flushIgnoresLocked(); err != nil && !errors.Is(err, os.ErrClosed) {
		// Closing the group instead would allow everything; retry.
		a.log.Error("flushing ignore marks failed; retrying in a second", "error", err)
		a.flushTimer.Reset(time.Second)
	}
}

// FlushIgnores removes every ignore mark now. A change of the plugin set
// (hot reload) must call it: the marks' answers belong to the old set.
func (a *Agent) FlushIgnores() error {
	a.ignMu.Lock()
	defer a.ignMu.Unlock()
	return a.flushIgnoresLocked()
}

func (a *Agent) flushIgnoresLocked() error {
	if err := a.fan.FlushIgnores(); err != nil {
		return err
	}
	a.flushAt, a.ignoreOff = time.Time{}, false
	if a.flushTimer != nil {
		a.flushTimer.Stop()
	}
	a.count(func(s *Stats) { s.IgnoreFlushes++ })
	return nil
}

// deadlineVerdict is the verdict for an event whose decision misses the
// deadline: the failure verdict of the process's zone, when the table
// holds the process; otherwise none (the configured deadline verdict).
func (a *Agent) deadlineVerdict(ev *fanotify.Event) (allow, ok bool) {
	if !a.upToDate() {
		return false, false // the pid map may be behind: an old zone is no basis
	}
	id, known, pending := a.pidOf(uint32(ev.PID))
	if !known || pending {
		return false, false // its zone is not known (yet)
	}
	p := a.eng.Process(id)
	if p == nil {
		return false, false
	}
	return a.eng.FailureVerdict(p.Zone) == abi.Allow, true
}

// decideOpen decides an open. The read, write and code.load decisions
// (usually cached) come first: when all allow, what the open is does not
// matter. Otherwise the open's access is read from the blocked system
// call (unknown counts as read and write) and an ELF shared object is
// also a code load, and the open is allowed only if every decision that
// applies allows it; the first that denies is the one reported.
func (a *Agent) decideOpen(ctx context.Context, ev *fanotify.Event, req *host.Request, d *host.Decision) error {
	var ds [3]host.Decision
	ops := [3]abi.Op{abi.OpFileWrite, abi.OpCodeLoad, abi.OpFileRead}
	all := true
	for i, op := range ops {
		req.Op = op
		if err := a.eng.DecideInto(ctx, req, &ds[i]); err != nil {
			return err
		}
		all = all && ds[i].Effective() == abi.Allow && ds[i].Verdict == abi.Allow
	}
	if all {
		req.Op, *d = abi.OpFileRead, ds[2]
		a.maybeIgnore(ev, ds[:])
		return nil
	}
	read, write, known := ev.Access()
	if !known {
		read, write = true, true
	}
	applies := [3]bool{write, ev.SharedObject(), read || !write}
	chosen := -1
	for i := range ops {
		if !applies[i] {
			continue
		}
		if chosen < 0 {
			chosen = i // the most specific op that applies, if none denies
		}
		if ds[i].Verdict == abi.Deny {
			chosen = i
			break
		}
	}
	req.Op, *d = ops[chosen], ds[chosen]
	return nil
}

func (a *Agent) count(f func(*Stats)) {
	a.statsMu.Lock()
	f(&a.stats)
	a.statsMu.Unlock()
}

// pidOf returns the identity of the process with pid, and whether its
// latest exec is still to be classified.
func (a *Agent) pidOf(pid uint32) (id host.ProcessID, ok, pending bool) {
	a.pidsMu.RLock()
	defer a.pidsMu.RUnlock()
	id, ok = a.pids[pid]
	_, pending = a.pending[pid]
	return id, ok, pending
}

func (a *Agent) setPid(id host.ProcessID) {
	a.pidsMu.Lock()
	a.pids[id.PID] = id
	a.pidsMu.Unlock()
}

// audit logs one decision: every denial at info level, others at debug.
func (a *Agent) audit(req *host.Request, d *host.Decision) {
	var chain []string
	exe := ""
	if p := d.Subject; p != nil {
		exe = p.Exe
		for _, q := range p.Lineage() {
			chain = append(chain, fmt.Sprintf("%s(%d)[%s]", q.BaseName(), q.ID.PID, q.Zone))
		}
	}
	args := []any{"pid", req.Subject.PID, "exe", exe, "zone", d.Zone, "op", req.Op.String(), "object", req.Object,
		"verdict", d.Verdict.String(), "enforced", d.Enforced, "rule", d.Rule, "reason", d.Reason,
		"plugin", d.Plugin, "cached", d.Cached, "failure", d.Failure, "lineage", strings.Join(chain, " <- ")}
	if d.Verdict == abi.Deny {
		a.log.Info("deny", args...)
	} else {
		a.log.Debug("decision", args...)
	}
}

// exeOf reads a process's executable, "" when it is gone.
func exeOf(pid uint32) string {
	exe, _, _ := procfs.Exe("/proc", pid)
	return exe
}

// ppidOf is pid's parent in /proc (0 when it cannot be read).
func ppidOf(pid uint32) uint32 {
	p, err := procfs.Read("/proc", pid)
	if err != nil {
		return 0
	}
	return p.PPID
}

// fsKindOfPath classifies the filesystem holding path (local when it
// cannot be told).
func fsKindOfPath(path string) abi.FSKind {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return abi.FSLocal
	}
	return fanotify.FSKindOf(st.Type)
}

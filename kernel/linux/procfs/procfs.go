// Package procfs reads the process table the kernel exposes in /proc, so
// that an agent starting on a running machine can rebuild who started
// whom. It reports facts (pid, start time, parent, executable) and leaves
// policy to its caller; it imports neither host/ nor wazero.
//
// Identity is (pid, start time): Start is field 22 of /proc/PID/stat, the
// process's start in clock ticks after boot, which never changes for a
// process and differs for a later process that reuses the pid (unless both
// start within one tick, which pid allocation makes vanishingly rare).
package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Process is one process (thread group) as /proc shows it.
type Process struct {
	PID   uint32
	Start uint64 // clock ticks after boot: field 22 of /proc/PID/stat
	PPID  uint32 // the current parent: the creator, unless re-parented
	Comm  string // the kernel's 15-byte name
	// Exe is the executable's path (readlink of /proc/PID/exe), "" for a
	// kernel thread or when it cannot be read; Deleted says the file was
	// removed or replaced since the process started.
	Exe     string
	Deleted bool
	Kernel  bool // a kernel thread (PF_KTHREAD)
	// Zombie: exited, not yet reaped. A process whose first thread exited
	// while others run shows the zombie state too; it is not one.
	Zombie bool
}

// ErrGone: the process exited while it was being read.
var ErrGone = errors.New("process gone")

const pfKthread = 0x00200000 // include/linux/sched.h

// Read reads one process from root (normally "/proc").
func Read(root string, pid uint32) (Process, error) {
	dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errESRCH) {
			return Process{}, fmt.Errorf("pid %d: %w", pid, ErrGone)
		}
		return Process{}, err
	}
	p, err := ParseStat(b)
	if err != nil {
		return Process{}, fmt.Errorf("%s: %w", filepath.Join(dir, "stat"), err)
	}
	if p.PID != pid {
		return Process{}, fmt.Errorf("%s: names pid %d", filepath.Join(dir, "stat"), p.PID)
	}
	if !p.Kernel {
		p.Exe, p.Deleted, _ = Exe(root, pid)
	}
	// The exe link is read after stat: if the pid was reused in between,
	// the start time read again differs, and the process is reported gone
	// rather than mixed with another one's executable.
	if b2, err := os.ReadFile(filepath.Join(dir, "stat")); err != nil {
		return Process{}, fmt.Errorf("pid %d: %w", pid, ErrGone)
	} else if p2, err := ParseStat(b2); err != nil || p2.Start != p.Start {
		return Process{}, fmt.Errorf("pid %d: %w (reused while read)", pid, ErrGone)
	}
	return p, nil
}

// Exe reads a process's executable (the /proc/PID/exe link), and whether
// the file was deleted or replaced since the process started it.
func Exe(root string, pid uint32) (exe string, deleted bool, err error) {
	exe, err = os.Readlink(filepath.Join(root, strconv.FormatUint(uint64(pid), 10), "exe"))
	if err != nil {
		return "", false, err
	}
	exe, deleted = strings.CutSuffix(exe, " (deleted)")
	return exe, deleted, nil
}

// ParseStat parses the contents of /proc/PID/stat. The name (field 2) is
// in parentheses and may itself hold spaces and parentheses, so the fields
// after it are found from the last ')'.
func ParseStat(b []byte) (Process, error) {
	s := strings.TrimRight(string(b), "\n")
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 1 || close < open {
		return Process{}, fmt.Errorf("malformed stat %q: no (name)", clip(s))
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(s[:open]), 10, 32)
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat %q: pid: %v", clip(s), err)
	}
	f := strings.Fields(s[close+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return Process{}, fmt.Errorf("malformed stat %q: %d fields after the name, want at least 20", clip(s), len(f))
	}
	ppid, err := strconv.ParseUint(f[4-3], 10, 32)
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat %q: ppid: %v", clip(s), err)
	}
	flags, err := strconv.ParseUint(f[9-3], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat %q: flags: %v", clip(s), err)
	}
	threads, err := strconv.ParseUint(f[20-3], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat %q: num_threads: %v", clip(s), err)
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat %q: starttime: %v", clip(s), err)
	}
	return Process{
		PID: uint32(pid), PPID: uint32(ppid), Start: start, Comm: s[open+1 : close],
		Kernel: flags&pfKthread != 0, Zombie: (f[0] == "Z" || f[0] == "X") && threads <= 1,
	}, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Scan reads every process under root. Processes that exit during the
// scan are left out; other errors are returned with the processes read.
func Scan(root string) ([]Process, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []Process
	var errs []error
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || !e.IsDir() {
			continue
		}
		p, err := Read(root, uint32(pid))
		switch {
		case errors.Is(err, ErrGone):
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, p)
		}
	}
	return out, errors.Join(errs...)
}

// Node is a scanned process with what can be said of its creator.
type Node struct {
	Process
	// CreatorKnown: the parent is the process that created this one, as
	// far as /proc can tell: it is in the scan, it is not the init
	// process (pid 1 also adopts every orphan, so its children may have
	// been started by anything) and it started no later than this one (a
	// parent that started later is a subreaper or a reused pid, not the
	// creator). Otherwise the ancestry is unknown and a caller must treat
	// the process as predating it.
	CreatorKnown bool
}

// Tree orders processes so that every process comes after its known
// creator, and says for each whether its creator is known. Kernel threads
// and zombies are left out: they run no code a policy could constrain.
func Tree(ps []Process) []Node {
	byPID := make(map[uint32]Process, len(ps))
	for _, p := range ps {
		if !p.Kernel && !p.Zombie {
			byPID[p.PID] = p
		}
	}
	depth := map[uint32]int{}
	var depthOf func(pid uint32, seen int) int
	known := func(p Process) bool {
		parent, ok := byPID[p.PPID]
		return ok && p.PPID != 1 && p.PPID != p.PID && parent.Start <= p.Start
	}
	depthOf = func(pid uint32, seen int) int {
		if d, ok := depth[pid]; ok {
			return d
		}
		p := byPID[pid]
		d := 0
		if known(p) && seen < len(byPID) {
			d = depthOf(p.PPID, seen+1) + 1
		}
		depth[pid] = d
		return d
	}
	out := make([]Node, 0, len(byPID))
	for pid, p := range byPID {
		depthOf(pid, 0)
		out = append(out, Node{Process: p, CreatorKnown: known(p)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if depth[a.PID] != depth[b.PID] {
			return depth[a.PID] < depth[b.PID]
		}
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.PID < b.PID
	})
	return out
}

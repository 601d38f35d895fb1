//go:build linux

package proctrack

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/internal/privtest"
	"lineage.dev/lineage/kernel/linux/procfs"
)

// collector gathers the tracker's events in the background.
type collector struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

func track(t *testing.T) (*Tracker, *collector) {
	t.Helper()
	privtest.Require(t)
	tr, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			ev, err := tr.Read()
			if err != nil {
				if err != ErrClosed {
					t.Errorf("Read: %v", err)
				}
				return
			}
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		<-c.done
	})
	return tr, c
}

// wait returns the first event matching f, waiting up to 10s for it.
func (c *collector) wait(t *testing.T, what string, f func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, ev := range c.events {
			if f(ev) {
				c.mu.Unlock()
				return ev
			}
		}
		c.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s event", what)
	return Event{}
}

func self(t *testing.T) procfs.Process {
	t.Helper()
	p, err := procfs.Read("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A child's fork names this process (with its /proc start time) as the
// creator and the child's own start time as /proc shows it; its exec and
// its exit follow.
func TestForkExecExit(t *testing.T) {
	tr, c := track(t)
	me := self(t)
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	child, err := procfs.Read("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	fork := c.wait(t, "fork", func(e Event) bool { return e.Kind == Fork && e.PID == pid })
	if fork.Creator != me.PID || fork.CreatorStart != me.Start || fork.Start != child.Start {
		t.Errorf("fork %+v; want creator %d started %d, start %d (from /proc)", fork, me.PID, me.Start, child.Start)
	}
	ex := c.wait(t, "exec", func(e Event) bool { return e.Kind == Exec && e.PID == pid })
	if ex.Start != child.Start {
		t.Errorf("exec %+v: start %d, want %d", ex, ex.Start, child.Start)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(child.Exe, &st); err != nil {
		t.Fatal(err)
	}
	if ex.Path != child.Exe || ex.Magic != uint64(st.Type) {
		t.Errorf("exec image %q (magic %#x), want %q (magic %#x) as /proc and statfs say", ex.Path, ex.Magic, child.Exe, st.Type)
	}
	c.wait(t, "exit", func(e Event) bool { return e.Kind == Exit && e.PID == pid && e.Start == child.Start })
	if n, err := tr.Lost(); err != nil || n != 0 {
		t.Errorf("lost %d, %v", n, err)
	}
	// The submitted count is memory-mapped and covers what was read.
	if tr.seq == nil {
		t.Error("the seq map is not memory-mapped: every Submitted is a system call")
	}
	c.mu.Lock()
	got := uint64(len(c.events))
	c.mu.Unlock()
	if n, err := tr.Submitted(); err != nil || n < got {
		t.Errorf("submitted %d (%v), but %d events were read", n, err, got)
	}
}

// Each exec event carries its own image, walked by the kernel when the
// exec happened: a process that execs three times and exits before
// anything reads /proc still has every image right.
func TestExecEventsCarryTheirImage(t *testing.T) {
	_, c := track(t)
	var want []string
	for _, name := range []string{"sh", "env", "true"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	cmd := exec.Command("sh", "-c", "exec env true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	c.wait(t, "exit", func(e Event) bool { return e.Kind == Exit && e.PID == pid })
	var got []string
	c.mu.Lock()
	for _, e := range c.events {
		if e.Kind == Exec && e.PID == pid {
			got = append(got, e.Path)
		}
	}
	c.mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("exec images %q, want %q", got, want)
	}

	// Across a mount: a program on a tmpfs mounted for the test.
	dir := t.TempDir()
	if err := unix.Mount("lineage-test", dir, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs for the test: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	b, err := os.ReadFile(want[2])
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "sub", "prog")
	os.Mkdir(filepath.Dir(prog), 0o755)
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(prog)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid = uint32(cmd.Process.Pid)
	ex := c.wait(t, "exec", func(e Event) bool { return e.Kind == Exec && e.PID == pid })
	if ex.Path != prog || ex.Magic != unix.TMPFS_MAGIC {
		t.Fatalf("exec image on a tmpfs: %q (magic %#x), want %q (tmpfs %#x)", ex.Path, ex.Magic, prog, unix.TMPFS_MAGIC)
	}
}

// A double fork: the orphan is re-parented (to pid 1 or a subreaper), but
// its fork event names the subshell that created it, and the subshell's
// names the shell. Threads are not processes: a multi-threaded program's
// thread creations produce no fork events.
func TestCreatorIsTheForkingProcess(t *testing.T) {
	_, c := track(t)
	sh := exec.Command("sh", "-c", `( sleep 2 >/dev/null 2>&1 & echo $! ) ; sh -c 'echo $PPID'`)
	out, err := sh.Output()
	if err != nil {
		t.Fatal(err)
	}
	var orphan, innerParent uint32
	if _, err := fmt.Sscan(string(out), &orphan, &innerParent); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	t.Cleanup(func() {
		if p, err := os.FindProcess(int(orphan)); err == nil {
			p.Kill()
		}
	})
	shPID := uint32(sh.Process.Pid)
	if innerParent != shPID {
		t.Fatalf("inner sh's parent %d, want the outer shell %d", innerParent, shPID)
	}
	fork := c.wait(t, "orphan fork", func(e Event) bool { return e.Kind == Fork && e.PID == orphan })
	if fork.Creator == shPID || fork.Creator == 1 {
		t.Fatalf("the orphan's creator is %d; want the subshell, not the shell (%d) or init", fork.Creator, shPID)
	}
	sub := c.wait(t, "subshell fork", func(e Event) bool { return e.Kind == Fork && e.PID == fork.Creator })
	if sub.Creator != shPID {
		t.Fatalf("the subshell %d was created by %d, want the shell %d", fork.Creator, sub.Creator, shPID)
	}
	now, err := procfs.Read("/proc", orphan)
	if err == nil {
		t.Logf("orphan %d now has parent %d; its creator was the subshell %d", orphan, now.PPID, fork.Creator)
		if now.Start != fork.Start {
			t.Errorf("orphan start %d in /proc, %d in its fork event", now.Start, fork.Start)
		}
	}
	// Threads: this test binary starts goroutines on new OS threads
	// freely; none of them may show up as a process.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.Kind == Fork && e.Creator == uint32(os.Getpid()) && e.PID != shPID {
			t.Errorf("a fork event %+v from the test process, which started only the shell", e)
		}
	}
}

// Drain hands over what the ring holds without waiting, counted by
// Submitted, and Close while another goroutine drains gives it ErrClosed
// (the ring is unmapped under it otherwise).
func TestDrainAndCloseWhileDraining(t *testing.T) {
	privtest.Require(t)
	tr, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := exec.Command("true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	var got []Event
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 60 && time.Now().Before(deadline) {
		if _, err := tr.Drain(func(ev Event) bool { got = append(got, ev); return true }); err != nil {
			t.Fatal(err)
		}
	}
	// 20 forks, execs and exits of ours, at least (other processes run too).
	if len(got) < 60 {
		t.Fatalf("drained %d events, want at least 60", len(got))
	}
	sub, err := tr.Submitted()
	if err != nil || sub < uint64(len(got)) {
		t.Fatalf("Submitted %d (%v), fewer than the %d drained", sub, err, len(got))
	}
	stop := make(chan error, 1)
	go func() {
		for {
			if _, err := tr.Drain(func(Event) bool { return true }); err != nil {
				stop <- err
				return
			}
			exec.Command("true").Run()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stop:
		if err != ErrClosed {
			t.Fatalf("Drain after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain kept running after Close")
	}
}

// decode takes what the kernel writes, and nothing it does not: a cut or
// malformed exec record gives no path (the agent reads /proc then), never
// a wrong one or a panic.
func TestDecode(t *testing.T) {
	rec := func(kind uint32, magic uint64, n, flags uint32, names string) []byte {
		b := make([]byte, 48+len(names))
		binary.NativeEndian.PutUint32(b[0:], kind)
		binary.NativeEndian.PutUint32(b[4:], 42)
		binary.NativeEndian.PutUint64(b[32:], magic)
		binary.NativeEndian.PutUint32(b[40:], n)
		binary.NativeEndian.PutUint32(b[44:], flags)
		copy(b[48:], names)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		path string
		ok   bool
	}{
		{"exec", rec(2, 0x1021994, 13, 0, "true\x00bin\x00usr\x00"), "/usr/bin/true", true},
		{"walk stopped", rec(2, 0, 13, 1, "true\x00bin\x00usr\x00"), "", true},
		{"no components", rec(2, 0, 0, 0, ""), "", true},
		{"length past the record", rec(2, 0, 99, 0, "true\x00"), "", true},
		{"length near 2^32", rec(2, 0, 0xffffffff, 0, "true\x00"), "", true},
		{"last name unterminated", rec(2, 0, 8, 0, "true\x00bin"), "", true},
		{"short exec record", rec(2, 0, 0, 0, "")[:40], "", true},
		{"too short", make([]byte, 31), "", false},
	} {
		ev, ok := decode(tc.b)
		if ok != tc.ok || ev.Path != tc.path {
			t.Errorf("%s: %+v %v, want path %q ok %v", tc.name, ev, ok, tc.path, tc.ok)
		}
	}
}

// A ring too small for what happens loses events, and counts them; what
// it kept is readable and counted as submitted.
func TestSmallRingCountsLosses(t *testing.T) {
	privtest.Require(t)
	tr, err := Start(Options{RingBytes: os.Getpagesize()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// 200 fork+exec+exit, none drained: far more than a page holds.
	if out, err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lost, err := tr.Lost()
	if err != nil || lost == 0 {
		t.Fatalf("Lost() = %d, %v after 600 events into a %d-byte ring, want some", lost, err, os.Getpagesize())
	}
	// Every event counted as submitted is readable: a lost one is not
	// counted (else a reader comparing the two would wait for ever).
	// Other processes add events meanwhile, so drain until they agree.
	total, submitted := 0, uint64(0)
	for deadline := time.Now().Add(5 * time.Second); ; {
		n, err := tr.Drain(func(Event) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if submitted, _ = tr.Submitted(); submitted == uint64(total) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drained %d events, %d counted as submitted", total, submitted)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("%d events kept, %d lost", total, lost)
}

func TestRingSizeIsChecked(t *testing.T) {
	for _, n := range []int{100, os.Getpagesize() * 3, os.Getpagesize() + 1} {
		if _, err := Start(Options{RingBytes: n}); err == nil {
			t.Errorf("Start with a %d-byte ring: no error", n)
		}
	}
}

// Since tells processes started while tracked from those that predate it.
func TestSince(t *testing.T) {
	privtest.Require(t)
	tr, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	self, err := procfs.Read("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if self.Start > tr.Since() {
		t.Errorf("this process (start %d) predates tracking (since %d)", self.Start, tr.Since())
	}
	time.Sleep(20 * time.Millisecond) // two clock ticks
	c := exec.Command("sleep", "1")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	p, err := procfs.Read("/proc", uint32(c.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if p.Start <= tr.Since() {
		t.Errorf("a process started after tracking (start %d) is not later than since %d", p.Start, tr.Since())
	}
}

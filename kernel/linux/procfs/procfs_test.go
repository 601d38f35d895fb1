package procfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// stat returns a /proc/PID/stat line with the fields this package reads.
func stat(pid, ppid uint32, comm, state string, flags, start uint64) string {
	// Fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime, then a few more.
	return fmt.Sprintf("%d (%s) %s %d 1 1 0 -1 %d 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 100 18446744073709551615\n",
		pid, comm, state, ppid, flags, start)
}

func TestParseStat(t *testing.T) {
	p, err := ParseStat([]byte(stat(42, 7, "a) (b c", "S", 0, 12345)))
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != 42 || p.PPID != 7 || p.Comm != "a) (b c" || p.Start != 12345 || p.Kernel || p.Zombie {
		t.Fatalf("%+v", p)
	}
	if p, err := ParseStat([]byte(stat(2, 0, "kthreadd", "S", pfKthread, 0))); err != nil || !p.Kernel {
		t.Fatalf("kernel thread: %+v %v", p, err)
	}
	if p, err := ParseStat([]byte(stat(9, 1, "z", "Z", 0, 5))); err != nil || !p.Zombie {
		t.Fatalf("zombie: %+v %v", p, err)
	}
	// The first thread exited, two others run: alive.
	if p, err := ParseStat([]byte(strings.Replace(stat(9, 1, "z", "Z", 0, 5), " 20 0 1 0 ", " 20 0 2 0 ", 1))); err != nil || p.Zombie {
		t.Fatalf("a process whose first thread exited: %+v %v", p, err)
	}
	for _, bad := range []string{"", "42 S 1", "x (a) S 1", "42 (a) S 1 2 3", "42 (a) S x" + strings.Repeat(" 0", 30),
		strings.Replace(stat(1, 0, "a", "S", 0, 1), " 1000 ", " 1000 ", 1)[:20]} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// fakeProc builds a /proc-like tree.
func fakeProc(t *testing.T, procs map[uint32]string, exes map[uint32]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, st := range procs {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if st != "" {
			if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(st), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if exe, ok := exes[pid]; ok {
			if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.Mkdir(filepath.Join(root, "self"), 0o755)
	os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644)
	return root
}

func TestScanFake(t *testing.T) {
	root := fakeProc(t, map[uint32]string{
		1:   stat(1, 0, "init", "S", 0, 1),
		2:   stat(2, 0, "kthreadd", "S", pfKthread, 1),
		100: stat(100, 1, "bash", "S", 0, 50),
		101: stat(101, 100, "thunderbird", "S", 0, 60),
		102: stat(102, 101, "firefox", "S", 0, 70),
		103: stat(103, 1, "orphan", "S", 0, 80),      // re-parented to init
		104: stat(104, 105, "younger", "S", 0, 90),   // its parent started later: not its creator
		105: stat(105, 100, "subreaper", "S", 0, 95), //
		106: stat(106, 102, "zombie", "Z", 0, 99),
		107: stat(107, 999, "lost", "S", 0, 99), // parent not in the scan
		108: "",                                 // exited during the scan
	}, map[uint32]string{
		1: "/sbin/init", 100: "/usr/bin/bash", 101: "/usr/bin/thunderbird", 102: "/usr/bin/firefox (deleted)",
		103: "/tmp/x", 104: "/usr/bin/y", 105: "/usr/bin/z", 107: "/usr/bin/lost",
	})
	ps, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 10 {
		t.Fatalf("%d processes, want 10 (pid 108 exited): %+v", len(ps), ps)
	}
	nodes := Tree(ps)
	pos := map[uint32]int{}
	byPID := map[uint32]Node{}
	for i, n := range nodes {
		pos[n.PID], byPID[n.PID] = i, n
	}
	if _, ok := byPID[2]; ok {
		t.Error("a kernel thread is in the tree")
	}
	if _, ok := byPID[106]; ok {
		t.Error("a zombie is in the tree")
	}
	if n := byPID[102]; n.Exe != "/usr/bin/firefox" || !n.Deleted {
		t.Errorf("deleted exe: %+v", n)
	}
	for pid, want := range map[uint32]bool{1: false, 100: false, 101: true, 102: true, 103: false, 104: false, 105: true, 107: false} {
		if got := byPID[pid].CreatorKnown; got != want {
			t.Errorf("pid %d: creator known %v, want %v", pid, got, want)
		}
	}
	for _, n := range nodes {
		if n.CreatorKnown && pos[n.PPID] > pos[n.PID] {
			t.Errorf("pid %d comes before its creator %d", n.PID, n.PPID)
		}
	}
}

// The real /proc: a child of the test process, and a grandchild started by
// a shell, are found with the right parents, executables and start
// times; a double-forked orphan is not attributed to the shell that
// started it.
func TestScanReal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	sleep, _ = filepath.EvalSymlinks(sleep)
	child := exec.Command(sleep, "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	// sh starts a sleep and waits for it; and a subshell starts another
	// that it leaves behind (a double fork), printing its pid.
	sh := exec.Command("sh", "-c", `"$0" 30 & ( "$0" 31 & echo $! ) ; wait`, sleep)
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	var orphan uint32
	if _, err := fmt.Fscan(out, &orphan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.Process.Kill()
		sh.Wait()
		if p, err := os.FindProcess(int(orphan)); err == nil {
			p.Kill()
		}
	})
	var ps []Process
	var grand, orph *Process
	self, me := uint32(os.Getpid()), Process{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps, err = Scan("/proc")
		if err != nil {
			t.Fatal(err)
		}
		grand, orph = nil, nil
		for i := range ps {
			p := &ps[i]
			switch {
			case p.PID == self:
				me = *p
			case p.PPID == uint32(sh.Process.Pid) && p.Exe == sleep:
				grand = p
			case p.PID == orphan:
				orph = p
			}
		}
		if grand != nil && orph != nil && orph.Exe == sleep || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if grand == nil || orph == nil {
		t.Fatalf("grandchild %v, orphan %v not found", grand, orph)
	}
	nodes := Tree(ps)
	byPID := map[uint32]Node{}
	for _, n := range nodes {
		byPID[n.PID] = n
	}
	c := byPID[uint32(child.Process.Pid)]
	if c.PPID != self || c.Exe != sleep || !c.CreatorKnown || c.Start < me.Start {
		t.Errorf("child %+v (test process %+v)", c, me)
	}
	if g := byPID[grand.PID]; !g.CreatorKnown || g.Start < byPID[uint32(sh.Process.Pid)].Start {
		t.Errorf("grandchild %+v", g)
	}
	if o := byPID[orphan]; o.PPID == uint32(sh.Process.Pid) {
		t.Errorf("the orphan %+v is attributed to the shell", o)
	} else {
		t.Logf("orphan re-parented to pid %d; creator known: %v", o.PPID, o.CreatorKnown)
	}
	// Identity: a process read again has the same start time.
	again, err := Read("/proc", uint32(child.Process.Pid))
	if err != nil || again.Start != c.Start {
		t.Errorf("read again: %+v %v", again, err)
	}
	// A process that exited is gone, not an error.
	done := exec.Command(sleep, "0")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := Read("/proc", uint32(done.Process.Pid)); !errors.Is(err, ErrGone) {
		t.Errorf("an exited process: %v, want ErrGone", err)
	}
}

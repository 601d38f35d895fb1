//go:build linux

package agent

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/host"
	"lineage.dev/lineage/internal/privtest"
	"lineage.dev/lineage/kernel/linux/procfs"
	"lineage.dev/lineage/plugins/builtin"
)

// When the tracker's ring buffer overflows, the fork, exec and exit events
// it loses are made up for from /proc, and decisions go back to the fast
// path. The ring here is one page, and the tracking loop is held while a
// flood fills it; then a process execs, another is started and a third
// killed, all lost.
func TestResyncAfterLostEvents(t *testing.T) {
	privtest.Require(t)
	cfg, _ := json.Marshal(map[string]any{"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/"}})
	dir := t.TempDir() // a tmpfs to guard
	if err := unix.Mount("lineage-resync", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs for the test: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	a := (&world{dir: dir, ringBytes: os.Getpagesize()}).agent(t, engineFor(t, cfg))

	// p will exec sleep in place, q will be killed: both known first.
	p := exec.Command("sh", "-c", "read x; exec sleep 60")
	pin, err := p.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	q := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{p, q} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c := c
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	pID, qID := known(t, a, p.Process.Pid), known(t, a, q.Process.Pid)
	shell := a.eng.Process(pID).Exe

	a.trackMu.Lock() // nothing drains the ring now
	locked := true
	defer func() {
		if locked {
			a.trackMu.Unlock()
		}
	}()
	if out, err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done").CombinedOutput(); err != nil {
		t.Fatalf("flood: %v: %s", err, out)
	}
	lost1, _ := a.tracker.Lost()
	if _, err := io.WriteString(pin, "go\n"); err != nil {
		t.Fatal(err)
	}
	r := exec.Command("sleep", "60")
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Process.Kill(); r.Wait() })
	q.Process.Kill()
	q.Wait()
	sleep := waitExe(t, p.Process.Pid, shell)
	waitExe(t, r.Process.Pid, "")
	lost2, _ := a.tracker.Lost()
	if lost1 == 0 || lost2-lost1 < 4 {
		t.Fatalf("lost %d events in the flood and %d after it, want some and at least 4 (p's exec, r's fork and exec, q's exit)", lost1, lost2-lost1)
	}
	before := a.Stats().Resyncs
	a.trackMu.Unlock()
	locked = false
	a.wake()

	deadline := time.Now().Add(10 * time.Second)
	for !(a.Stats().Resyncs > before && a.upToDate()) {
		if time.Now().After(deadline) {
			t.Fatalf("no resync within 10s: %+v, lost %d, seen %d", a.Stats(), lost2, a.lostSeen.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The exec in place: p's image is sleep, as p's own successor.
	if cur := a.eng.Process(pID); cur == nil || cur.Exe != sleep || !cur.InPlace || cur.Creator == nil || cur.Creator.Exe != shell {
		t.Errorf("p after the resync: %+v, want %s exec'd in place from %s", cur, sleep, shell)
	}
	// The fork: r is held, as this process's child.
	rID, ok, _ := a.pidOf(uint32(r.Process.Pid))
	if cur := a.eng.Process(rID); !ok || cur == nil || cur.Exe != sleep || cur.AncestryUnknown || cur.Creator == nil || cur.Creator.ID.PID != uint32(os.Getpid()) {
		t.Errorf("r after the resync: %+v (held %v), want %s created by pid %d", cur, ok, sleep, os.Getpid())
	}
	// The exit: q is gone, and so is every process the flood started.
	if _, ok, _ := a.pidOf(qID.PID); ok || a.eng.Process(qID) != nil {
		t.Errorf("q is still held after it exited")
	}
	a.pidsMu.RLock()
	for pid, id := range a.pids {
		if cur, err := procfs.Read("/proc", pid); err != nil || cur.Start != id.Start {
			t.Errorf("pid %d (start %d) is held but not running", pid, id.Start)
		}
	}
	a.pidsMu.RUnlock()
}

// engineFor returns an engine over the built-in zones plugin with cfg.
func engineFor(t *testing.T, cfg []byte) *host.Engine {
	t.Helper()
	ctx := t.Context()
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	p, err := rt.Load(ctx, builtin.ZonesSource, builtin.Zones, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	e, err := host.New(host.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// known waits until the agent holds pid, classified, and returns its
// identity.
func known(t *testing.T, a *Agent, pid int) host.ProcessID {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, ok, pending := a.pidOf(uint32(pid))
		if ok && !pending && a.eng.Process(id) != nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in the table after 5s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitExe waits until pid's executable is not not, and returns it.
func waitExe(t *testing.T, pid int, not string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		exe, _, err := procfs.Exe("/proc", uint32(pid))
		if err == nil && exe != "" && exe != not {
			return exe
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: executable still %q after 5s (%v)", pid, exe, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

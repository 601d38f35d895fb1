//go:build linux

package agent

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"lineage.dev/lineage/host"
	"lineage.dev/lineage/kernel/linux/procfs"
	"lineage.dev/lineage/plugins/builtin"
)

// lossyAgent is an agent whose tracker's ring buffer is one page, over
// the zones plugin, guarding a tmpfs made for the test.
func lossyAgent(t *testing.T) *Agent {
	t.Helper()
	dir := testTmpfs(t, "lineage-resync", "1m")
	cfg, _ := json.Marshal(map[string]any{"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/"}})
	return (&world{dir: dir, ringBytes: os.Getpagesize()}).agent(t, pluginEngine(t, builtin.ZonesSource, builtin.Zones, cfg))
}

// hold stops the agent draining its ring buffer until the returned
// function runs (also at the end of the test).
func hold(t *testing.T, a *Agent) (release func()) {
	a.trackMu.Lock()
	held := true
	release = func() {
		if held {
			held = false
			a.trackMu.Unlock()
			a.wake()
		}
	}
	t.Cleanup(release)
	return release
}

// flood fills the held ring: 200 fork+exec+exit are far more than a page
// holds. It fails the test unless events were lost.
func flood(t *testing.T, a *Agent) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done").CombinedOutput(); err != nil {
		t.Fatalf("flood: %v: %s", err, out)
	}
	if lost, _ := a.tracker.Lost(); lost == 0 {
		t.Fatal("the flood lost no events")
	}
}

// start starts a command and kills it at the end of the test.
func start(t *testing.T, c *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// When the tracker's ring buffer overflows, the fork, exec and exit events
// it loses are made up for from /proc, and decisions go back to the fast
// path. While the tracking loop is held and a flood has filled the ring,
// a process execs in place, another is started, a third killed, and a
// fourth is orphaned: all of it lost.
func TestResyncAfterLostEvents(t *testing.T) {
	a := lossyAgent(t)
	// p will exec sleep in place, q will be killed: both held first.
	p := exec.Command("sh", "-c", "read x; exec sleep 60")
	pin, err := p.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, p)
	q := start(t, exec.Command("sleep", "60"))
	pID, qID := known(t, a, p.Process.Pid), known(t, a, q.Process.Pid)
	shell := a.eng.Process(pID).Exe

	release := hold(t, a)
	flood(t, a)
	lost1, _ := a.tracker.Lost()
	if _, err := io.WriteString(pin, "go\n"); err != nil {
		t.Fatal(err)
	}
	r := start(t, exec.Command("sleep", "60"))
	q.Process.Kill()
	q.Wait()
	// o: a sleep whose creator (a shell) exits at once, started while
	// events are lost.
	oPID := orphanSleep(t)
	sleep := waitExe(t, p.Process.Pid, shell)
	waitExe(t, r.Process.Pid, "")
	waitExe(t, oPID, "")
	lost2, _ := a.tracker.Lost()
	if lost2-lost1 < 6 {
		t.Fatalf("lost %d events after the flood, want at least 6 (p's exec, r's fork and exec, q's exit, o's fork and exec)", lost2-lost1)
	}
	before := a.Stats().Resyncs
	release()

	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().Resyncs == before {
		if time.Now().After(deadline) {
			t.Fatalf("no resync within 10s: %+v, lost %d, seen %d", a.Stats(), lost2, a.lostSeen.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The exec in place: p's image is sleep, as p's own successor.
	if cur := a.eng.Process(pID); cur == nil || cur.Exe != sleep || !cur.InPlace || cur.Creator == nil || cur.Creator.Exe != shell {
		t.Errorf("p after the resync: %+v, want %s exec'd in place from %s", cur, sleep, shell)
	}
	// The fork: r is held, as this process's child.
	rID, ok := heldAs(a, r.Process.Pid)
	if cur := a.eng.Process(rID); !ok || cur == nil || cur.Exe != sleep || cur.AncestryUnknown || cur.Creator == nil || cur.Creator.ID.PID != uint32(os.Getpid()) {
		t.Errorf("r after the resync: %+v (held %v), want %s created by pid %d", cur, ok, sleep, os.Getpid())
	}
	// The exit: q is gone.
	if id, ok, _ := a.pidOf(qID.PID); (ok && id == qID) || a.eng.Process(qID) != nil {
		t.Errorf("q is still held after it exited")
	}
	// The orphan: born while tracked, its creator unknown, so not judged
	// by its executable (system space), but given the failure zone. /proc
	// tells a creator only through the parent: a subreaper above this
	// test would adopt o and pass for its creator.
	oID, ok := heldAs(a, oPID)
	o := a.eng.Process(oID)
	if !ok || o == nil {
		t.Fatalf("o (pid %d) is not held after the resync", oPID)
	}
	op, err := procfs.Read("/proc", uint32(oPID))
	if err != nil {
		t.Fatalf("o: %v", err)
	}
	if op.PPID == 1 {
		if o.Zone != "untrusted" || o.Rule != "ancestry-lost" || !o.AncestryUnknown {
			t.Errorf("o after the resync: zone %s, rule %s, ancestry unknown %v; want the failure zone (untrusted) for a lost ancestry", o.Zone, o.Rule, o.AncestryUnknown)
		}
	} else if o.Creator == nil || o.Creator.ID.PID != op.PPID {
		t.Errorf("o after the resync: %+v; want its adoptive parent %d as creator", o, op.PPID)
	}
	if !a.upToDate() {
		// Other processes on the machine may overflow a one-page ring
		// again at any time; then another resync must follow.
		deadline := time.Now().Add(10 * time.Second)
		for !a.upToDate() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if !a.upToDate() {
			t.Errorf("the table never caught up again: %+v", a.Stats())
		}
	}
}

// A fork whose creator's own fork was lost is not judged by its
// executable either: with the ring drained but not yet resynced, the
// child of a process the table never saw gets the failure zone. The
// resync that follows finds its creator, and re-enters it as its child.
func TestLostCreatorGivesFailureZone(t *testing.T) {
	a := lossyAgent(t)
	// Other processes on the machine may fill a one-page ring between the
	// drain and c's fork; then c's fork is lost too, and the scenario is
	// tried again.
	for attempt := 1; ; attempt++ {
		if lostCreator(t, a) {
			return
		}
		if attempt == 5 {
			t.Fatal("c's fork was lost in every attempt: the machine is too busy for a one-page ring")
		}
	}
}

// lostCreator runs TestLostCreatorGivesFailureZone's scenario once. It
// reports false when c's own fork was lost (nothing tested).
func lostCreator(t *testing.T, a *Agent) bool {
	release := hold(t, a)
	defer release()
	flood(t, a)
	b := exec.Command("sh", "-c", "read x; sleep 60 & wait")
	bin, err := b.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	shell := waitExe(t, b.Process.Pid, "")
	// Drain without resyncing: b's fork and exec are lost for now.
	if err := a.catchUpLocked(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := heldAs(a, b.Process.Pid); ok {
		t.Fatal("b's fork was not lost: the flood left room in the ring")
	}
	lost, _ := a.tracker.Lost()
	if _, err := io.WriteString(bin, "go\n"); err != nil {
		t.Fatal(err)
	}
	// c: b's child, whose fork the ring now has room for.
	var cPID int
	deadline := time.Now().Add(5 * time.Second)
	for cPID == 0 {
		if kids, err := os.ReadFile("/proc/" + strconv.Itoa(b.Process.Pid) + "/task/" + strconv.Itoa(b.Process.Pid) + "/children"); err == nil {
			if f := strings.Fields(string(kids)); len(f) > 0 {
				cPID, _ = strconv.Atoi(f[0])
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("b started no child")
		}
		time.Sleep(time.Millisecond)
	}
	waitExe(t, cPID, shell) // its exec of sleep too
	if err := a.catchUpLocked(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.resolveAllLocked(t.Context())
	a.mu.Unlock()
	cID, ok := heldAs(a, cPID)
	c := a.eng.Process(cID)
	if !ok || c == nil {
		if now, _ := a.tracker.Lost(); now != lost {
			return false
		}
		t.Fatalf("c (pid %d) is not held after its fork was applied", cPID)
	}
	if c.Zone != "untrusted" || !ancestryLost(c) {
		t.Fatalf("c: zone %s (rule %s, %s), want untrusted for a lost ancestry: its creator's fork was lost", c.Zone, c.Rule, c.Reason)
	}
	// The resync enters b from /proc, and c again as b's child.
	before := a.Stats().Resyncs
	release()
	for deadline := time.Now().Add(10 * time.Second); a.Stats().Resyncs == before; {
		if time.Now().After(deadline) {
			t.Fatalf("no resync within 10s: %+v", a.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c = a.eng.Process(cID)
	if c == nil || ancestryLost(c) || c.Creator == nil || c.Creator.ID.PID != uint32(b.Process.Pid) {
		t.Fatalf("c after the resync: %+v; want it re-entered as b's (%d) child", c, b.Process.Pid)
	}
	b.Process.Kill()
	return true
}

// known waits until the agent holds pid, classified, and returns its
// identity.
func known(t *testing.T, a *Agent, pid int) host.ProcessID {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, ok := heldAs(a, pid)
		if _, _, pending := a.pidOf(uint32(pid)); ok && !pending && a.eng.Process(id) != nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in the table after 5s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldAs returns the identity the agent holds for pid, and whether it is
// the process running with that pid now: pids are reused (pid_max is
// 32768 on these machines), and an entry for an exited process whose exit
// was lost is not this one.
func heldAs(a *Agent, pid int) (host.ProcessID, bool) {
	id, ok, _ := a.pidOf(uint32(pid))
	p, err := procfs.Read("/proc", uint32(pid))
	return id, ok && err == nil && p.Start == id.Start
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

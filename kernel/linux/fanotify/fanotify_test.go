//go:build linux

package fanotify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/internal/privtest"
)

// guarded mounts a tmpfs made for the test, fills it, and starts a
// listener marking only that mount. Cleanup closes the listener (which
// releases any event still pending) before unmounting.
func guarded(t *testing.T, cfg Config, h Handler) (string, *Listener) {
	t.Helper()
	privtest.Require(t)
	dir := t.TempDir()
	if err := unix.Mount("lineage-test", dir, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs for the test: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	for _, f := range []string{"allow.txt", "deny.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"allow-true", "deny-true"} {
		if err := os.WriteFile(filepath.Join(dir, f), bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		l.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of Close: the reader stayed blocked in read")
		}
	})
	if err := l.Mark(dir, MaskOpen|MaskExec); err != nil {
		t.Fatal(err)
	}
	go func() { done <- l.Run(ctx, h) }()
	return dir, l
}

// run runs a command with a bound on its time, returning its combined
// output and error.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v hung", name, args)
	}
	return string(out), err
}

func denyByName(_ context.Context, ev *Event) bool {
	return !strings.HasPrefix(filepath.Base(ev.Path), "deny")
}

func TestOpenAndExecVerdicts(t *testing.T) {
	var mu sync.Mutex
	var seen []Event
	dir, l := guarded(t, Config{}, func(ctx context.Context, ev *Event) bool {
		mu.Lock()
		seen = append(seen, *ev)
		mu.Unlock()
		return denyByName(ctx, ev)
	})
	if out, err := run(t, "cat", filepath.Join(dir, "allow.txt")); err != nil || out != "data\n" {
		t.Fatalf("reading an allowed file: %q %v", out, err)
	}
	if out, err := run(t, "cat", filepath.Join(dir, "deny.txt")); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("reading a denied file: %q %v, want EPERM", out, err)
	}
	if _, err := run(t, filepath.Join(dir, "allow-true")); err != nil {
		t.Fatalf("running an allowed program: %v", err)
	}
	if _, err := run(t, filepath.Join(dir, "deny-true")); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("running a denied program: %v, want EPERM", err)
	}
	// This process's own opens are never sent to the handler, and never
	// wait: the listener allows them at once.
	if b, err := os.ReadFile(filepath.Join(dir, "deny.txt")); err != nil || !bytes.Equal(b, []byte("data\n")) {
		t.Fatalf("the listener's own process was blocked: %v", err)
	}
	st := l.Stats()
	if st.Self == 0 || st.Denied < 2 || st.Allowed < 2 || st.Deadline != 0 || st.QueueFull != 0 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	var execs, opens int
	for _, ev := range seen {
		if ev.PID == int32(os.Getpid()) {
			t.Errorf("the handler saw an event of the listener's own process: %+v", ev)
		}
		if ev.FS != abi.FSLocal {
			t.Errorf("tmpfs reported as %v", ev.FS)
		}
		switch ev.Kind {
		case Exec:
			execs++
		case Open:
			opens++
		}
	}
	if execs < 2 || opens < 2 {
		t.Errorf("%d exec and %d open events: %+v", execs, opens, seen)
	}
}

// A handler that never answers in time gets the deadline verdict, and the
// process waits about the deadline, not the handler.
func TestDeadline(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "deny", true: "allow"}[allow], func(t *testing.T) {
			dir, l := guarded(t, Config{Deadline: 50 * time.Millisecond, DeadlineAllow: allow}, func(ctx context.Context, ev *Event) bool {
				<-ctx.Done() // never decides
				return true
			})
			start := time.Now()
			_, err := run(t, "cat", filepath.Join(dir, "allow.txt"))
			took := time.Since(start)
			if (err == nil) != allow {
				t.Fatalf("deadline verdict allow=%v: cat error %v", allow, err)
			}
			if st := l.Stats(); st.Deadline == 0 {
				t.Fatalf("stats %+v: no deadline verdict counted", st)
			}
			t.Logf("cat took %v with a 50ms deadline", took)
		})
	}
}

// DeadlineVerdict chooses the deadline verdict per event (the agent: by
// the process's zone), over the configured one.
func TestDeadlineVerdictPerEvent(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "deny", true: "allow"}[allow], func(t *testing.T) {
			cfg := Config{Deadline: 50 * time.Millisecond, DeadlineAllow: !allow,
				DeadlineVerdict: func(ev *Event) (bool, bool) { return allow, ev.PID > 0 }}
			dir, _ := guarded(t, cfg, func(ctx context.Context, ev *Event) bool {
				<-ctx.Done() // never decides
				return true
			})
			_, err := run(t, "cat", filepath.Join(dir, "allow.txt"))
			if (err == nil) != allow {
				t.Fatalf("per-event deadline verdict allow=%v: cat error %v", allow, err)
			}
		})
	}
}

// Close wakes a reader idle in read (the doorbell): Run returns at once,
// and the group is closed.
func TestCloseWakesIdleReader(t *testing.T) {
	privtest.Require(t)
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background(), denyByName) }()
	// Until the reader is in read.
	for i := 0; ; i++ {
		l.wmu.Lock()
		in := l.inSys
		l.wmu.Unlock()
		if in {
			break
		}
		if i == 1000 {
			t.Fatal("the reader never reached read")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of Close")
	}
	l.wmu.Lock()
	closed := l.fdClosed
	l.wmu.Unlock()
	if !closed {
		t.Fatal("the group is still open after Run returned")
	}
	t.Logf("Run returned %v after Close", time.Since(start))
}

// Closing the listener releases a process that waits for an answer.
func TestCloseReleasesPending(t *testing.T) {
	asked := make(chan struct{}, 1)
	dir, l := guarded(t, Config{Deadline: time.Hour}, func(ctx context.Context, ev *Event) bool {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return false
	})
	cmd := exec.Command("cat", filepath.Join(dir, "allow.txt"))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the handler was never asked")
	}
	l.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || out.String() != "data\n" {
			t.Fatalf("after Close: %v %q, want the open allowed", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the process stayed blocked after the listener closed")
	}
}

// With every worker busy and no queue room, an event gets the queue-full
// verdict at once.
func TestQueueFull(t *testing.T) {
	release := make(chan struct{})
	// Closed, not sent to: a held event may have met its deadline (and
	// left no handler waiting) on a slow machine.
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll)
	dir, l := guarded(t, Config{Workers: 1, Queue: 1, Deadline: 5 * time.Second, QueueFullAllow: false}, func(ctx context.Context, ev *Event) bool {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return true
	})
	// The first cat occupies the worker, the second the queue; the third
	// finds both taken.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); exec.Command("cat", filepath.Join(dir, "allow.txt")).Run() }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Events < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := run(t, "cat", filepath.Join(dir, "allow.txt")); err == nil {
		t.Fatal("the third open was allowed with the queue full")
	}
	if st := l.Stats(); st.QueueFull == 0 {
		t.Fatalf("stats %+v: no queue-full verdict counted", st)
	}
	releaseAll()
	wg.Wait()
}

// The handler can tell a write from a read, and an ELF shared object from
// other files.
func TestIntentAndSharedObject(t *testing.T) {
	type seen struct {
		path                  string
		write, known, sharedO bool
	}
	var mu sync.Mutex
	var got []seen
	dir, _ := guarded(t, Config{}, func(ctx context.Context, ev *Event) bool {
		_, w, k := ev.Access()
		mu.Lock()
		got = append(got, seen{filepath.Base(ev.Path), w, k, ev.SharedObject()})
		mu.Unlock()
		return true
	})
	if _, err := run(t, "sh", "-c", "echo more >> "+filepath.Join(dir, "allow.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "cat", filepath.Join(dir, "deny.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "cat", filepath.Join(dir, "allow-true")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]seen{
		"allow.txt":  {"allow.txt", true, true, false},
		"deny.txt":   {"deny.txt", false, true, false},
		"allow-true": {"allow-true", false, true, true},
	}
	found := map[string]bool{}
	for _, s := range got {
		if w, ok := want[s.path]; ok {
			found[s.path] = true
			if s != w {
				t.Errorf("%s: got %+v, want %+v", s.path, s, w)
			}
		}
	}
	if len(found) != len(want) {
		t.Fatalf("events %+v", got)
	}
}

// A reader that stops reading is found by the watchdog, which closes the
// group: the waiting process is released instead of frozen.
func TestWatchdogReleasesStuckReader(t *testing.T) {
	stuck := make(chan time.Duration, 1)
	release := make(chan struct{})
	var once sync.Once
	cfg := Config{StuckAfter: 300 * time.Millisecond, Deadline: time.Hour, Stuck: func(d time.Duration) { stuck <- d }}
	dir, l := guarded(t, cfg, func(context.Context, *Event) bool { return true })
	t.Cleanup(func() { close(release) }) // before guarded's cleanup waits for Run
	// From now on the reader stalls after its next read.
	stall := func() { once.Do(func() { <-release }) }
	l.stall.Store(&stall)
	// The first open's event is read, then the reader stalls; a second
	// open waits in the kernel, unread.
	first := exec.Command("cat", filepath.Join(dir, "allow.txt"))
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Process.Kill(); first.Wait() })
	start := time.Now()
	if _, err := run(t, "cat", filepath.Join(dir, "deny.txt")); err != nil {
		t.Fatalf("the waiting open was not released: %v", err)
	}
	select {
	case d := <-stuck:
		t.Logf("watchdog: reader stuck for %v; the open waited %v", d, time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the watchdog did not report")
	}
	if st := l.Stats(); st.Stuck != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A filesystem mark covers every mount of the filesystem, a bind mount
// included, which a mount mark does not.
func TestMarkFilesystemCoversBindMounts(t *testing.T) {
	privtest.Require(t)
	dir, other := t.TempDir(), t.TempDir()
	if err := unix.Mount("lineage-test", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	write := func(p string) {
		if err := os.WriteFile(p, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "deny.txt"))
	if err := unix.Mount(dir, other, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(other, unix.MNT_DETACH) })
	for _, fs := range []bool{false, true} {
		l, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if fs {
			err = l.MarkFilesystem(dir, MaskOpen)
		} else {
			err = l.Mark(dir, MaskOpen)
		}
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx, denyByName) }()
		_, errBind := run(t, "cat", filepath.Join(other, "deny.txt"))
		_, errMount := run(t, "cat", filepath.Join(dir, "deny.txt"))
		cancel()
		l.Close()
		<-done
		if errMount == nil {
			t.Errorf("filesystem mark %v: the marked mount itself was not guarded", fs)
		}
		if guardedBind := errBind != nil; guardedBind != fs {
			t.Errorf("filesystem mark %v: the bind mount guarded: %v", fs, guardedBind)
		}
	}
}

// A thread blocked in an open shows "running" for a moment each time the
// group answers another event; the intent is read again rather than taken
// as unknown (which counts as a write).
func TestIntentRereadsRunning(t *testing.T) {
	reads := 0
	readSyscall = func(string) ([]byte, error) {
		reads++
		if reads < 3 {
			return []byte("running\n"), nil
		}
		return []byte(fmt.Sprintf("%d 0xffffff9c 0x7ffd0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00\n", sysOpenat)), nil
	}
	defer func() { readSyscall = os.ReadFile }()
	if r, w, k := openIntent(1, "syscall"); !k || !r || w {
		t.Fatalf("read %v, write %v, known %v after two reads of running; want a known read", r, w, k)
	}
	// A thread that stays running (not in a system call) is given up on.
	reads = -100
	if _, _, k := openIntent(1, "syscall"); k {
		t.Fatal("a thread that keeps running: known")
	}
	if reads != -100+runningRetries+1 {
		t.Fatalf("%d reads of a running thread, want %d", reads+100, runningRetries+1)
	}
}

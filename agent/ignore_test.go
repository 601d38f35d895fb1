//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/internal/privtest"
	"lineage.dev/lineage/kernel/linux/fanotify"
	"lineage.dev/lineage/plugins/builtin"
)

// openallWasm builds testdata/openall once per test binary.
var openallWasm []byte

func openall(t *testing.T) []byte {
	t.Helper()
	if openallWasm != nil {
		return openallWasm
	}
	out := filepath.Join(t.TempDir(), "openall.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/openall")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/openall: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if wasm, err = abi.AppendMetadata(wasm, abi.Metadata{Major: abi.Major, Minor: abi.Minor, Entry: abi.EntryClassify | abi.EntryDecide, Ops: abi.AllOps, Name: "openall", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	openallWasm = wasm
	return wasm
}

// ignoreWorld is a tmpfs made for the test with a data file and a program,
// and an agent guarding it over an engine with the given plugin.
func ignoreWorld(t testing.TB, name string, wasm, cfg []byte) (dir string, a *Agent) {
	t.Helper()
	dir = testTmpfs(t, "lineage-ignore", "16m")
	write(t, filepath.Join(dir, "data"), []byte("data\n"), 0o644)
	truePath, _ := exec.LookPath("true")
	b, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "true"), b, 0o755)
	w := &world{dir: dir}
	return dir, w.agent(t, pluginEngine(t, name, wasm, cfg))
}

// events runs each command line and returns how many permission events
// the agent received meanwhile.
func events(t *testing.T, a *Agent, cmds ...[]string) uint64 {
	t.Helper()
	before := a.Fanotify().Events
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	return a.Fanotify().Events - before
}

// Answers that hold for every subject and every object become ignore
// marks: the kernel stops asking about the file, for opens and for
// executions, until the file is modified or the marks are flushed.
func TestIgnoreMarks(t *testing.T) {
	dir, a := ignoreWorld(t, "openall", openall(t), nil)
	data, prog := filepath.Join(dir, "data"), filepath.Join(dir, "true")
	cat := []string{"cat", data}

	if n := events(t, a, cat); n != 1 {
		t.Fatalf("first open: %d events, want 1", n)
	}
	if st := a.Stats(); st.Ignored != 1 {
		t.Fatalf("after the first open: %d ignore marks, want 1", st.Ignored)
	}
	if n := events(t, a, cat, cat, cat); n != 0 {
		t.Fatalf("three more opens: %d events, want 0 (ignored in the kernel)", n)
	}
	// An execution raises an exec event and an open event for the
	// program: both become marks, then neither is raised again.
	if n := events(t, a, []string{prog}); n != 2 {
		t.Fatalf("first exec: %d events, want 2", n)
	}
	if n := events(t, a, []string{prog}, []string{prog}); n != 0 {
		t.Fatalf("two more execs: %d events, want 0", n)
	}
	// Modifying the file clears its mark (the kernel does), so the next
	// open is asked about again, and marked again.
	if err := os.WriteFile(data, []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := events(t, a, cat); n != 1 {
		t.Fatalf("open after a modification: %d events, want 1", n)
	}
	if n := events(t, a, cat); n != 0 {
		t.Fatalf("second open after a modification: %d events, want 0", n)
	}
	// A flush (a plugin reload must do one) removes them all.
	if err := a.FlushIgnores(); err != nil {
		t.Fatal(err)
	}
	if n := events(t, a, cat, []string{prog}); n != 3 {
		t.Fatalf("after a flush, an open and an exec: %d events, want 3", n)
	}
	if st, fs := a.Stats(), a.Fanotify(); st.Ignored != 7 || fs.Ignored != 7 || st.Denials != 0 {
		t.Fatalf("stats %+v, fanotify %+v: want 7 ignore marks (1+2+1+3) and no denials", st, fs)
	}
}

// Marks go before their answers expire: the flush runs when the first of
// them is due.
func TestIgnoreMarksExpire(t *testing.T) {
	dir, a := ignoreWorld(t, "openall", openall(t), []byte(`{"ttl_ms": 1500}`))
	cat := []string{"cat", filepath.Join(dir, "data")}
	if n := events(t, a, cat, cat); n != 1 {
		t.Fatalf("two opens: %d events, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().IgnoreFlushes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no flush within 10s of a 1.5s answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := events(t, a, cat); n != 1 {
		t.Fatalf("open after the flush: %d events, want 1", n)
	}
}

// The reference policy decides by zone, so nothing it answers may become
// a mark: every open is asked about.
func TestNoIgnoreMarksWithZones(t *testing.T) {
	privtest.Require(t)
	cfg, _ := json.Marshal(map[string]any{"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", "/tmp/"}})
	dir, a := ignoreWorld(t, builtin.ZonesSource, builtin.Zones, cfg)
	cat := []string{"cat", filepath.Join(dir, "data")}
	if n := events(t, a, cat, cat, cat); n != 3 {
		t.Fatalf("three opens: %d events, want 3", n)
	}
	if st := a.Stats(); st.Ignored != 0 {
		t.Fatalf("%d ignore marks with the zones plugin, want 0", st.Ignored)
	}
}

// BenchmarkFastOpen is the reader's work for one open by a system process
// whose answers are cached, between reading the event and writing the
// verdict: the table's freshness, the process's identity, and the three
// decisions an open needs, looked up without the path. The system calls
// around it (read, write, close) are the floor's.
func BenchmarkFastOpen(b *testing.B) {
	// The subject: a sleep orphaned before the agent starts, which the
	// agent finds with no known creator and classifies system by its
	// executable, as it would a service.
	pid := orphanSleep(b)
	cfg, _ := json.Marshal(map[string]any{"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/"}})
	dir, a := ignoreWorld(b, builtin.ZonesSource, builtin.Zones, cfg)
	id, known, _ := a.pidOf(uint32(pid))
	if !known {
		b.Fatal("the sleep is not in the table")
	}
	for _, op := range []abi.Op{abi.OpFileRead, abi.OpFileWrite, abi.OpCodeLoad} {
		d, err := a.eng.Decide(context.Background(), &host.Request{Subject: id, DecideRequest: abi.DecideRequest{Op: op, Object: filepath.Join(dir, "data"), FS: abi.FSLocal}})
		if err != nil || d.Verdict != abi.Allow || d.Scope.Object != abi.ObjectAny {
			b.Fatalf("warm-up %v: %+v %v (want an allow for any object)", op, d, err)
		}
	}
	ev := &fanotify.Event{PID: int32(pid), Kind: fanotify.Open}
	b.ReportAllocs()
	for b.Loop() {
		if allow, ok := a.fast(ev); !ok || !allow {
			b.Fatalf("fast path: allow %v, answered %v", allow, ok)
		}
	}
}

// orphanSleep starts a sleep whose creator (a shell) exits at once, and
// returns its pid; it is killed at the end of the test.
func orphanSleep(t testing.TB) int {
	t.Helper()
	out, err := exec.Command("sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("the sleep's pid %q: %v", out, err)
	}
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
	return pid
}

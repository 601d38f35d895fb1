//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/internal/privtest"
	"lineage.dev/lineage/plugins/builtin"
)

// world is a tmpfs made for the test: sys/ is system space (the chain
// helper under guarded-app names, and sys/etc/config), home/u user space
// (a program, a shared object, a private folder).
type world struct {
	dir       string // the guarded tmpfs
	ctl       string // the launcher's FIFO, outside it
	runs      int
	ringBytes int // the tracker's ring buffer; 0: its default
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := testTmpfs(t, "lineage-e2e", "64m")
	for _, d := range []string{"sys/etc", "home/u/.ssh"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	helper := filepath.Join(dir, "sys", "chain")
	build := exec.Command("go", "build", "-o", helper, "./testdata/chain")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the helper: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"thunderbird", "firefox", "evince", "bash"} {
		write(t, filepath.Join(dir, "sys", name), bin, 0o755)
	}
	truePath, _ := exec.LookPath("true")
	trueBin, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "home/u/tool"), trueBin, 0o755)
	write(t, filepath.Join(dir, "home/u/lib.so"), trueBin, 0o644) // a PIE: ELF ET_DYN, like a library
	write(t, filepath.Join(dir, "home/u/.ssh/id_rsa"), []byte("secret\n"), 0o600)
	write(t, filepath.Join(dir, "sys/etc/config"), []byte("original\n"), 0o644)
	w := &world{dir: dir}
	w.launcher(t)
	// A copy of the shell outside the guarded mount, in system space too.
	if err := os.Mkdir(filepath.Join(w.ctl, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(w.ctl, "sys", "bash"), bin, 0o755)
	return w
}

// testTmpfs mounts a tmpfs of size made for the test (root), unmounted at
// its end, and returns where.
func testTmpfs(t testing.TB, name, size string) string {
	t.Helper()
	privtest.Require(t)
	dir := t.TempDir()
	if err := unix.Mount(name, dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs for the test: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func write(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// engine returns an engine over the built-in zones plugin, with the
// world's sys/ as system space and home/*/.ssh/ private.
func (w *world) engine(t *testing.T) *host.Engine {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"system_space":    []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", w.dir + "/sys/", w.ctl + "/sys/"},
		"private_folders": []string{w.dir + "/home/*/.ssh/"},
	})
	return pluginEngine(t, builtin.ZonesSource, builtin.Zones, cfg)
}

// pluginEngine returns an engine over one plugin, loaded with cfg, all of
// it closed at the end of the test.
func pluginEngine(t testing.TB, name string, wasm, cfg []byte) *host.Engine {
	t.Helper()
	ctx := context.Background()
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	p, err := rt.Load(ctx, name, wasm, cfg)
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

func (w *world) agent(t testing.TB, e *host.Engine) *Agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := Start(ctx, e, Config{Marks: []string{w.dir}, Deadline: 2 * time.Second, ringBytes: w.ringBytes})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		a.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

// launcher starts the helper as a launcher (see testdata/chain) before the
// agent starts, orphaned so that it has no known creator: the agent finds
// it in system space and classifies it system, like a service a real
// agent finds running.
func (w *world) launcher(t *testing.T) {
	t.Helper()
	w.ctl = t.TempDir() // outside the guarded mount
	if err := unix.Mkfifo(filepath.Join(w.ctl, "in"), 0o600); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(w.dir, "sys", "chain")
	out, err := exec.Command("sh", "-c", `("$0" -serve "$1" "$2" >/dev/null 2>&1 & echo $!)`, helper, w.ctl, w.dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	})
}

// chain has the launcher run exe (from sys/) and returns its lines.
func (w *world) chain(t *testing.T, exe string, args ...string) map[string]string {
	t.Helper()
	return w.results(t, w.start(t, exe, args...))
}

// start has the launcher start exe with args; results waits for it.
func (w *world) start(t *testing.T, exe string, args ...string) string {
	t.Helper()
	w.runs++
	out := filepath.Join(w.ctl, fmt.Sprintf("out%d", w.runs))
	f, err := os.OpenFile(filepath.Join(w.ctl, "in"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%s %s %s\n", exe, out, strings.Join(args, " "))
	f.Close()
	return out
}

func (w *world) results(t *testing.T, out string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(out + ".done"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out)
			t.Fatalf("the chain did not finish:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		res[k] = v
	}
	return res
}

// The origin scenario with real processes: thunderbird -> firefox ->
// evince -> bash, all from system space; bash is guarded by inheritance,
// so each of its four attempts fails with EPERM and nothing is written.
// The same bash started from a system-zone parent may do all of it but
// launch from user space, which zero-trust space denies to every zone.
func TestOriginScenarioRealProcesses(t *testing.T) {
	w := newWorld(t)
	e := w.engine(t)
	a := w.agent(t, e)

	guarded := w.chain(t, "thunderbird")
	for _, k := range []string{"exec-user-space", "write-system-space", "read-private", "load-user-library"} {
		if !strings.Contains(guarded[k], "operation not permitted") {
			t.Errorf("guarded bash, %s: %q, want EPERM (all: %v)", k, guarded[k], guarded)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(w.dir, "sys/etc/config")); string(b) != "original\n" {
		t.Errorf("sys/etc/config now holds %q: the denied write wrote", b)
	}

	system := w.chain(t, "bash")
	want := map[string]string{"write-system-space": "ok", "read-private": "ok", "load-user-library": "ok"}
	for k, v := range want {
		if system[k] != v {
			t.Errorf("system bash, %s: %q, want %q (all: %v)", k, system[k], v, system)
		}
	}
	if !strings.Contains(system["exec-user-space"], "operation not permitted") {
		t.Errorf("system bash, exec-user-space: %q, want EPERM (zero-trust space)", system["exec-user-space"])
	}
	// A guarded app that replaces its image with a shell at once: the
	// shell keeps the guarded zone (its creator is the process's own
	// zone), which only holds if the first image was seen, however soon
	// the second replaced it. The shell is a copy outside the guarded
	// mount (system space all the same), so no permission event makes the
	// agent look before it runs: only the exec events say what ran.
	for _, target := range []string{"bash", filepath.Join(w.ctl, "sys", "bash")} {
		inPlace := w.chain(t, "evince", "-exec", target)
		for _, k := range []string{"exec-user-space", "write-system-space", "read-private", "load-user-library"} {
			if !strings.Contains(inPlace[k], "operation not permitted") {
				t.Errorf("evince exec'd in place into %s, %s: %q, want EPERM (all: %v)", target, k, inPlace[k], inPlace)
			}
		}
	}
	st := a.Stats()
	t.Logf("agent: %+v; fanotify: %+v", st, a.Fanotify())
	if st.Rebuilt == 0 || st.Forks == 0 || st.Execs == 0 || st.Denials < 5 {
		t.Errorf("stats %+v", st)
	}
}

// Denials are audited: one JSON line each with the process, its zone, the
// request, the rule, the reason and the lineage.
func TestAuditLog(t *testing.T) {
	w := newWorld(t)
	e := w.engine(t)
	r, wr := io.Pipe()
	lines := make(chan string, 100)
	go func() {
		b, _ := io.ReadAll(r)
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				lines <- l
			}
		}
		close(lines)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Start(ctx, e, Config{Marks: []string{w.dir}, Deadline: 2 * time.Second, Log: jsonLogger(wr)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	results := w.chain(t, "thunderbird")
	cancel()
	a.Close()
	<-done
	wr.Close()
	found := false
	var all []string
	for l := range lines {
		all = append(all, l)
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m["@message"] == "deny" && m["op"] == abi.OpFileRead.String() {
			found = true
			for _, k := range []string{"pid", "exe", "zone", "op", "object", "rule", "reason", "lineage"} {
				if _, ok := m[k]; !ok {
					t.Errorf("audit line lacks %q: %s", k, l)
				}
			}
			if !strings.Contains(m["lineage"].(string), "thunderbird") || m["zone"] != "guarded" {
				t.Errorf("lineage %q, zone %q", m["lineage"], m["zone"])
			}
		}
	}
	if !found {
		t.Fatalf("no audit line for the denied read of the private folder; the chain's results: %v; stats %+v; the log:\n%s",
			results, a.Stats(), strings.Join(all, "\n"))
	}
}

func jsonLogger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "agent", JSONFormat: true, Output: w, Level: hclog.Info})
}

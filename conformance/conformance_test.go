package conformance

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/plugins/builtin"
)

var ctx = context.Background()

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func result(t *testing.T, rep *Report, name string) Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no result for %s", name)
	return Result{}
}

func logReport(t *testing.T, rep *Report) {
	t.Helper()
	for _, r := range rep.Results {
		t.Logf("%s %s: %s", r.Status, r.Name, r.Summary)
		if r.Status == Fail {
			for _, e := range r.Evidence {
				t.Logf("    %s", e)
			}
		}
	}
}

// The reference plugins pass, with every check run.
func TestReferencePluginsPass(t *testing.T) {
	plugins := []struct {
		name   string
		wasm   func(t *testing.T) []byte
		config string
	}{
		{"zones-builtin", func(*testing.T) []byte { return builtin.Zones }, "../plugins/zones/config.example.json"},
		{"zones-empty-config", func(*testing.T) []byte { return builtin.Zones }, ""},
		{"good", func(t *testing.T) []byte { return readFile(t, "testdata/good.wasm") }, ""},
		{"sdk-example", buildExample, "../sdk/go/example/config.example.json"},
	}
	for _, p := range plugins {
		t.Run(p.name, func(t *testing.T) {
			o := Options{Limits: host.Limits{CallDeadline: referenceDeadline}}
			if p.config != "" {
				o.Config = readFile(t, p.config)
			}
			rep, err := Run(ctx, p.name, p.wasm(t), o)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				if r.Status != Pass {
					logReport(t, rep)
					t.Fatalf("%s: %s", r.Name, r.Status)
				}
			}
			if !rep.Passed {
				t.Fatal("report not passed")
			}
		})
	}
}

// buildExample builds sdk/go/example with the Makefile's recipe.
func buildExample(t *testing.T) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: builds the example plugin with the Go toolchain")
	}
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "plugins", "PLUGIN_OUT="+out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make plugins: %v\n%s", err, b)
	}
	return readFile(t, filepath.Join(out, "example.wasm"))
}

// corpus is the broken-plugin corpus with the check each must fail and
// what its message must say.
var corpus = []struct {
	file, check, want string
	// runtime: the plugin loads, and misbehaves only when called.
	runtime bool
}{
	{"not-wasm", "static.wasm", `not a WebAssembly module: starts with "this"`, false},
	{"empty", "static.wasm", "file is empty", false},
	{"truncated", "static.metadata", "runs past the end of the module", false},
	{"no-exports", "static.exports", "missing export lineage_buffer", false},
	{"wrong-major", "static.metadata", "plugin speaks ABI 2.0, this host speaks 1.0", false},
	{"start-loop", "lifecycle.sample-config", "start function: deadline", false},
	{"unknown-import", "static.imports", "imports not allowed (only wasi_snapshot_preview1 functions are): env.system", false},
	{"huge-memory", "static.memory", "declares an initial memory of 16384 pages (1024 MiB), over the host's limit", false},
	{"zero-memory", "lifecycle.sample-config", "lies outside memory of 0 bytes", false},
	{"decide-loop", "vectors", "deadline: exceeded", true},
	{"decide-trap", "vectors", "trap: wasm error: unreachable", true},
	{"memory-bomb", "vectors", "call failed", true}, // a trap, or the deadline while growing
	{"recursion", "vectors", "call failed", true},   // the depth limit, or the deadline on a loaded machine
	{"garbage-verdict", "vectors", "field verdict: got 7", true},
	{"garbage-length", "vectors", "field rule.len: got 65000", true},
	{"garbage-offset", "vectors", "answer length 2147483647 exceeds the 65536-byte buffer", true},
}

// Every broken plugin fails the suite, at the check that names its
// problem, quickly, and without the suite panicking.
func TestBrokenCorpusFails(t *testing.T) {
	for _, tc := range corpus {
		t.Run(tc.file, func(t *testing.T) {
			// The init deadline bounds start-loop; 1s keeps the test short.
			o := Options{Limits: host.Limits{InitDeadline: time.Second}}
			start := time.Now()
			rep, err := Run(ctx, tc.file+".wasm", readFile(t, "testdata/"+tc.file+".wasm"), o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Passed {
				logReport(t, rep)
				t.Fatal("the broken plugin passed")
			}
			r := result(t, rep, tc.check)
			if r.Status != Fail || !strings.Contains(r.Summary+strings.Join(r.Evidence, "\n"), tc.want) {
				logReport(t, rep)
				t.Fatalf("%s: %s %q, want a failure mentioning %q", tc.check, r.Status, r.Summary, tc.want)
			}
			for _, r := range rep.Results {
				for _, e := range r.Evidence {
					if strings.Contains(e, "the check itself panicked") {
						t.Errorf("%s: %s", r.Name, e)
					}
				}
			}
			t.Logf("%s fails %s in %v: %s", tc.file, tc.check, time.Since(start).Round(time.Millisecond), r.Summary)
		})
	}
}

// The engine survives every runtime-broken plugin: decisions go on until
// the plugin has failed 10,000 calls, and every one gets the failure
// verdict within the call deadline (plus what the machine adds), with no
// goroutine or memory growth and no panic.
func TestEngineContainsBrokenPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: 10,000 failed calls per broken plugin")
	}
	const failures = 10000
	const deadline = time.Millisecond
	for _, tc := range corpus {
		if !tc.runtime {
			continue
		}
		t.Run(tc.file, func(t *testing.T) {
			// No quarantine, so that every decision may call the plugin;
			// 1 MiB of memory, so that the memory bomb goes off fast.
			lim := host.Limits{CallDeadline: deadline, QuarantineAfter: 1 << 30, MemoryBytes: 1 << 20}
			rt, err := host.NewRuntime(ctx, host.RuntimeOptions{Limits: lim})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close(ctx)
			p, err := rt.Load(ctx, tc.file, readFile(t, "testdata/"+tc.file+".wasm"), nil)
			if err != nil {
				t.Fatalf("a runtime-broken plugin must load: %v", err)
			}
			defer p.Close(ctx)
			e, err := host.New(host.Config{}, p)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			root := e.Exist(ctx, host.ProcessID{PID: 1, Start: 1}, "/usr/bin/bash", abi.FSLocal)
			req := &host.Request{Subject: root.ID, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite, Object: "/etc/passwd"}}
			var d host.Decision
			decide := func() time.Duration {
				start := time.Now()
				if err := e.DecideInto(ctx, req, &d); err != nil {
					t.Fatalf("decision: %v", err)
				}
				if !d.Failure || d.Verdict != abi.Deny || d.Cached {
					t.Fatalf("decision %+v, want the zone's failure verdict (deny), not cached", d)
				}
				return time.Since(start)
			}
			// Warm up (instances, the pool, timers), then measure.
			for p.Info().Failures < 100 {
				decide()
			}
			runtime.GC()
			g0 := runtime.NumGoroutine()
			var m0 runtime.MemStats
			runtime.ReadMemStats(&m0)
			var slowest time.Duration
			n, f0 := 0, p.Info().Failures
			for p.Info().Failures < f0+failures {
				slowest = max(slowest, decide())
				n++
			}
			// Instances are replaced in the background: let them settle.
			time.Sleep(50 * time.Millisecond)
			runtime.GC()
			var m1 runtime.MemStats
			runtime.ReadMemStats(&m1)
			g1 := runtime.NumGoroutine()
			t.Logf("%d decisions, %d failed plugin calls; slowest decision %v; goroutines %d -> %d; heap in use %d -> %d KiB",
				n, p.Info().Failures-f0, slowest, g0, g1, m0.HeapInuse>>10, m1.HeapInuse>>10)
			if g1 > g0+2 {
				t.Errorf("goroutines grew from %d to %d", g0, g1)
			}
			if m1.HeapInuse > m0.HeapInuse+16<<20 {
				t.Errorf("heap in use grew from %d to %d KiB", m0.HeapInuse>>10, m1.HeapInuse>>10)
			}
			// A decision waits at most the call deadline for an instance
			// and at most the call deadline for the call; a busy machine
			// adds to that, so the bound is loose: what it catches is a
			// call that was never interrupted.
			if slowest > 2*deadline+250*time.Millisecond {
				t.Errorf("slowest decision took %v with a %v call deadline", slowest, deadline)
			}
		})
	}
}

// The committed corpus is what build.sh builds from the sources.
func TestCorpusIsFreshBuild(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("wat2wasm (Debian package wabt) is needed to rebuild the corpus: %v", err)
		}
		t.Skip("wat2wasm not installed (Debian package wabt); CI installs it and runs this test")
	}
	if testing.Short() {
		t.Skip("short mode: builds the corpus")
	}
	out := t.TempDir()
	cmd := exec.Command("conformance/testdata/build.sh", out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	files, err := filepath.Glob("testdata/*.wasm")
	if err != nil || len(files) != len(corpus)+1 {
		t.Fatalf("%d committed .wasm files (%v), want %d", len(files), err, len(corpus)+1)
	}
	for _, f := range files {
		fresh := readFile(t, filepath.Join(out, filepath.Base(f)))
		if !bytes.Equal(fresh, readFile(t, f)) {
			t.Errorf("%s differs from a fresh build: run conformance/testdata/build.sh", f)
		}
	}
}

// --only and --skip select checks; unknown names are an error.
func TestSelection(t *testing.T) {
	wasm := readFile(t, "testdata/good.wasm")
	rep, err := Run(ctx, "good", wasm, Options{Only: []string{"static", "semantics.ttl"}, Skip: []string{"static.imports"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		want := Skip
		if strings.HasPrefix(r.Name, "static.") && r.Name != "static.imports" || r.Name == "semantics.ttl" {
			want = Pass
		}
		if r.Status != want {
			t.Errorf("%s: %s, want %s", r.Name, r.Status, want)
		}
	}
	if !rep.Passed {
		t.Error("a run of selected passing checks did not pass")
	}
	if _, err := Run(ctx, "good", wasm, Options{Only: []string{"statics"}}); err == nil || !strings.Contains(err.Error(), `"statics"`) {
		t.Fatalf("unknown selector: %v", err)
	}
}

// A plugin whose child is more permissive than its creator, or whose
// scope is wider than the truth, fails the semantic checks.
func TestSemanticViolations(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: builds a Go plugin")
	}
	for _, tc := range []struct {
		name, check, want string
	}{
		{"escalate", "semantics.inheritance", "more permissive than its creator"},
		{"widescope", "semantics.scopes", "inside a claimed scope got another verdict"},
		{"addrscope", "semantics.scopes", "inside a claimed scope got another verdict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm := buildGoPlugin(t, "testdata/go/"+tc.name)
			rep, err := Run(ctx, tc.name, wasm, Options{Only: []string{"semantics"}})
			if err != nil {
				t.Fatal(err)
			}
			r := result(t, rep, tc.check)
			if r.Status != Fail || !strings.Contains(r.Summary, tc.want) {
				logReport(t, rep)
				t.Fatalf("%s: %s %q, want a failure saying %q", tc.check, r.Status, r.Summary, tc.want)
			}
			t.Logf("%s: %s", tc.check, r.Evidence[0])
		})
	}
}

func buildGoPlugin(t *testing.T, dir string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "p.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+dir)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	wasm := readFile(t, out)
	wasm, err := abi.AppendMetadata(wasm, abi.Metadata{Major: abi.Major, Minor: abi.Minor, Entry: abi.EntryClassify | abi.EntryDecide, Ops: abi.AllOps, Name: filepath.Base(dir), Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

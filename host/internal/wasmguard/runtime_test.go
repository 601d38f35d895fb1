package wasmguard

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The tests in this file run instrumented modules in wazero, the runtime
// the host uses, to check that they still compile, behave the same, and
// can be interrupted.

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// featuresConfig enables tail calls on top of wazero's defaults, for
// features.wasm.
func featuresConfig() wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesTailCall)
}

// noStart instantiates without running any exported start function
// (_start by default), as the host does; the Wasm start section is gone.
func noStart() wazero.ModuleConfig { return wazero.NewModuleConfig().WithStartFunctions() }

// within runs f and fails the test if it does not return in time, so that
// a regression shows as a failure rather than a hung test binary.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func interruptOf(t *testing.T, mod api.Module) api.MutableGlobal {
	t.Helper()
	g, ok := mod.ExportedGlobal(InterruptExport).(api.MutableGlobal)
	if !ok {
		t.Fatalf("no mutable global exported as %q", InterruptExport)
	}
	if g.Type() != api.ValueTypeI32 || g.Get() != 0 {
		t.Fatalf("%s: type %v value %d, want i32 0", InterruptExport, g.Type(), g.Get())
	}
	return g
}

// quiesceRuntime keeps the Go runtime from needing the guest's thread
// until the test ends. wazero's native code cannot be preempted, so while a
// guest spins it holds its P (scheduler slot) and never reaches a safe
// point. Anything that waits for every P then waits for the guest: a GC
// stop-the-world stops all other goroutines, including the one that would
// set the interrupt, and the process hangs for good; the tail of a GC cycle
// (forEachP flushing per-P caches) blocks its own P, which on a 2-core
// machine leaves no P to run the timer that sets the interrupt. The tests
// must not depend on whether a GC happens to be under way in their window,
// so they turn the GC off and make sure there are P's to spare. The host
// has to deal with this for real (see the package documentation).
func quiesceRuntime(t *testing.T) {
	// Disabling the GC also waits for a cycle's mark phase to finish.
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(math.MaxInt64)
	procs := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(max(procs, 2) + 2)
	t.Cleanup(func() {
		if t.Failed() {
			// The guest may still be spinning: restoring would stop
			// the world and hang instead of reporting the failure.
			return
		}
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

// callAndInterrupt calls fn in a goroutine, sets the interrupt global after
// 20ms and returns the call's error. It fails the test if the call returns
// before it is interrupted (unless mayEndFirst) or does not return within a
// second after.
func callAndInterrupt(t *testing.T, mod api.Module, fn string, mayEndFirst bool, args ...uint64) error {
	t.Helper()
	quiesceRuntime(t)
	g := interruptOf(t, mod)
	f := mod.ExportedFunction(fn)
	if f == nil {
		t.Fatalf("no function exported as %q", fn)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.Call(context.Background(), args...)
		done <- err
	}()
	select {
	case err := <-done:
		if !mayEndFirst || err == nil {
			t.Fatalf("%s returned before it was interrupted: %v", fn, err)
		}
		t.Logf("%s stopped before the interrupt: %v", fn, firstLine(err))
		return err
	case <-time.After(20 * time.Millisecond):
	}
	g.Set(1)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("%s returned no error after the interrupt", fn)
		}
		return err
	case <-time.After(time.Second):
		// The guest goroutine keeps spinning; the test binary exits anyway.
		t.Fatalf("%s still running 1s after the interrupt", fn)
		return nil
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func TestInterrupt(t *testing.T) {
	tests := []struct {
		name     string
		fixture  string
		fn       string
		args     []uint64
		hadStart bool
		// The runtime may stop unbounded recursion with a stack overflow
		// before the interrupt; everything else must run until
		// interrupted and then trap on the check's unreachable.
		mayEndFirst bool
	}{
		{name: "infinite loop", fixture: "interrupt.wasm", fn: "spin"},
		{name: "unbounded recursion", fixture: "interrupt.wasm", fn: "recurse", args: []uint64{0}, mayEndFirst: true},
		{name: "wide call tree without loops", fixture: "interrupt.wasm", fn: "exptree", args: []uint64{60}},
		{name: "infinite loop in start function", fixture: "start_loop.wasm", fn: StartExport, hadStart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			res := mustInstrument(t, readFixture(t, tt.fixture))
			if res.HadStart != tt.hadStart {
				t.Errorf("HadStart = %v, want %v", res.HadStart, tt.hadStart)
			}
			r := wazero.NewRuntime(ctx)
			defer r.Close(ctx)
			var mod api.Module
			within(t, 5*time.Second, "instantiation", func() {
				var err error
				if mod, err = r.InstantiateWithConfig(ctx, res.Wasm, noStart()); err != nil {
					t.Errorf("instantiate: %v", err)
				}
			})
			if mod == nil {
				return
			}
			err := callAndInterrupt(t, mod, tt.fn, tt.mayEndFirst, tt.args...)
			if !tt.mayEndFirst && !strings.Contains(err.Error(), "unreachable") {
				t.Errorf("error %q, want the check's unreachable trap", firstLine(err))
			}
		})
	}
}

// TestSameBehaviour runs the original and the instrumented features.wasm
// side by side and compares every result, the memories and the globals.
func TestSameBehaviour(t *testing.T) {
	ctx := context.Background()
	orig := readFixture(t, "features.wasm")
	res := mustInstrument(t, orig)
	// 14 functions and 7 loops (see features.wat).
	if !res.HadStart || res.Checks != 21 {
		t.Errorf("HadStart %v, Checks %d; want true, 21", res.HadStart, res.Checks)
	}

	// Each in a runtime of its own, so that each has its own "env".
	instantiate := func(wasm []byte, cfg wazero.ModuleConfig) api.Module {
		r := wazero.NewRuntimeWithConfig(ctx, featuresConfig())
		t.Cleanup(func() { r.Close(ctx) })
		if _, err := r.InstantiateWithConfig(ctx, readFixture(t, "env.wasm"), wazero.NewModuleConfig().WithName("env")); err != nil {
			t.Fatal(err)
		}
		mod, err := r.InstantiateWithConfig(ctx, wasm, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return mod
	}
	want := instantiate(orig, wazero.NewModuleConfig()) // runs its start section
	got := instantiate(res.Wasm, noStart())
	if _, err := got.ExportedFunction(StartExport).Call(ctx); err != nil {
		t.Fatalf("%s: %v", StartExport, err)
	}

	i32 := func(v int32) uint64 { return api.EncodeI32(v) }
	f64 := api.EncodeF64
	calls := []struct {
		fn   string
		args []uint64
	}{
		{"nested", []uint64{0}},
		{"nested", []uint64{1}},
		{"nested", []uint64{100}},
		{"machine", []uint64{1}},
		{"machine", []uint64{27}},
		{"machine", []uint64{97}},
		{"typed", []uint64{10, 4}},
		{"typed", []uint64{i32(-5), 100}},
		{"typed", []uint64{1000, 1}},
		{"simd", []uint64{7}},
		{"simd", []uint64{0xdeadbeef}},
		{"bulk", []uint64{9}},
		{"bulk", []uint64{255}},
		{"refs", []uint64{4, 6}},
		{"refs", []uint64{7, 6}},
		{"refs", []uint64{101, 2}},
		{"numeric", []uint64{f64(1.5)}},
		{"numeric", []uint64{f64(-1e300)}},
		{"numeric", []uint64{f64(math.NaN())}},
		{"is_even", []uint64{0}},
		{"is_even", []uint64{7}},
		{"is_even", []uint64{100000}}, // only returns with real tail calls
		{"globals", []uint64{1}},
		{"globals", []uint64{5}},
	}
	// The functions share state (tables, memory, globals), so the calls
	// run in the same order against both.
	for _, c := range calls {
		wantRes, wantErr := want.ExportedFunction(c.fn).Call(ctx, c.args...)
		gotRes, gotErr := got.ExportedFunction(c.fn).Call(ctx, c.args...)
		if (gotErr == nil) != (wantErr == nil) || !slicesEqual(gotRes, wantRes) {
			t.Errorf("%s%v = %v, %v; original gives %v, %v", c.fn, c.args, gotRes, gotErr, wantRes, wantErr)
		}
	}
	if g, w := got.Memory().Size(), want.Memory().Size(); g != w {
		t.Fatalf("memory size %d, original %d", g, w)
	}
	gm, _ := got.Memory().Read(0, got.Memory().Size())
	wm, _ := want.Memory().Read(0, want.Memory().Size())
	if !bytes.Equal(gm, wm) {
		t.Error("memory contents differ from the original's")
	}
	if g, w := got.ExportedGlobal("started").Get(), want.ExportedGlobal("started").Get(); g != w {
		t.Errorf("global started = %d, original %d", g, w)
	}

	// The checks are live: with the global set, any call traps.
	interruptOf(t, got).Set(1)
	if _, err := got.ExportedFunction("typed").Call(ctx, 1, 2); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("call with the interrupt set: %v, want the unreachable trap", err)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTruncated cuts a small valid module at every byte. Every cut inside a
// section must fail; a cut between sections leaves a shorter module that
// Instrument must handle exactly as well as wazero does.
func TestTruncated(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	full := wasmModule(
		typeSec,
		oneFuncSec,
		sec(secMemory, vec([]byte{0x00, 0x01})),
		sec(secExport, vec(cat(str("f"), []byte{kindFunc, 0x00}))),
		sec(secStart, leb(0)),
		sec(secDataCount, leb(1)),
		sec(secCode, vec(fn(0x03, 0x40, 0x41, 0x03, 0x1a, 0x0b, 0x0b))),
		sec(secData, vec(cat([]byte{0x01}, str("\x03")))),
		custom("name"),
	)
	boundaries := map[int]bool{8: true}
	for _, s := range listSections(t, full) {
		boundaries[s.end] = true
	}
	for n := 0; n < len(full); n++ {
		prefix := full[:n]
		res, err := Instrument(prefix)
		if !boundaries[n] {
			if err == nil {
				t.Errorf("cut at %d of %d: no error", n, len(full))
			}
			continue
		}
		if ok := compiles(ctx, r, prefix); (err == nil) != ok {
			t.Errorf("cut at section boundary %d: Instrument error %v, but wazero compiles the input: %v", n, err, ok)
		}
		if err == nil && !compiles(ctx, r, res.Wasm) {
			t.Errorf("cut at section boundary %d: output does not compile", n)
		}
	}
	res := mustInstrument(t, full)
	if !compiles(ctx, r, res.Wasm) {
		t.Error("instrumented full module does not compile")
	}
}

func compiles(ctx context.Context, r wazero.Runtime, wasm []byte) bool {
	cm, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return false
	}
	cm.Close(ctx)
	return true
}

// goModule builds testdata/goplugin once per test binary.
var goModule = sync.OnceValues(func() ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wasmguard")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "plugin.wasm")
	cmd := exec.Command(goTool, "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = filepath.Join("testdata", "goplugin")
	cmd.Env = append(os.Environ(),
		"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0",
		"GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{err, msg}
	}
	return os.ReadFile(out)
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

func mustGoModule(tb testing.TB) []byte {
	tb.Helper()
	wasm, err := goModule()
	if _, ok := err.(*exec.Error); ok {
		tb.Skipf("no go tool to build the Go guest: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return wasm
}

func TestGoWasip1(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program for wasip1")
	}
	ctx := context.Background()
	wasm := mustGoModule(t)
	res := mustInstrument(t, wasm)
	t.Logf("Go wasip1 module: %d bytes, %d checks inserted, %d bytes instrumented (%+.2f%%), start section: %v",
		len(wasm), res.Checks, len(res.Wasm), 100*float64(len(res.Wasm)-len(wasm))/float64(len(wasm)), res.HadStart)

	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.InstantiateWithConfig(ctx, res.Wasm, noStart())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
		t.Fatalf("_initialize: %v", err)
	}
	for _, c := range []struct{ a, b, want int32 }{{2, 3, 5}, {-7, 1000, 993}, {40, 0, 40}} {
		out, err := mod.ExportedFunction("add").Call(ctx, api.EncodeI32(c.a), api.EncodeI32(c.b))
		if err != nil {
			t.Fatalf("add(%d, %d): %v", c.a, c.b, err)
		}
		if got := api.DecodeI32(out[0]); got != c.want {
			t.Errorf("add(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}

	// And a Go loop that never ends is stopped too.
	err = callAndInterrupt(t, mod, "spin", false)
	if !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("spin: %q, want the check's unreachable trap", firstLine(err))
	}
}

func BenchmarkInstrument(b *testing.B) {
	wasm := mustGoModule(b)
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Instrument(wasm); err != nil {
			b.Fatal(err)
		}
	}
}

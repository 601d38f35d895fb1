package wasmguard

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// globalOf returns the instrumented module's global exported as name.
func globalOf(t testing.TB, mod api.Module, name string) api.MutableGlobal {
	t.Helper()
	g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
	if !ok {
		t.Fatalf("no mutable global exported as %q", name)
	}
	if g.Type() != api.ValueTypeI32 {
		t.Fatalf("%s: type %v, want i32", name, g.Type())
	}
	return g
}

// interruptOf returns the interrupt global, which must still be clear.
func interruptOf(t testing.TB, mod api.Module) api.MutableGlobal {
	t.Helper()
	g := globalOf(t, mod, InterruptExport)
	if g.Get() != 0 {
		t.Fatalf("%s is %d, want 0", InterruptExport, g.Get())
	}
	return g
}

func depthOf(t testing.TB, mod api.Module) uint32 {
	t.Helper()
	return uint32(globalOf(t, mod, DepthExport).Get())
}

// callAndInterrupt calls fn in a goroutine, sets the interrupt global after
// 20ms and returns the call's error. It fails the test if the call returns
// before it is interrupted or does not return within 10s after. The Go
// runtime goes on as usual meanwhile, garbage collections included: that
// the guest cannot hold them up is part of what is tested.
func callAndInterrupt(t testing.TB, mod api.Module, fn string, args ...uint64) error {
	t.Helper()
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
		t.Fatalf("%s returned before it was interrupted: %v", fn, err)
	case <-time.After(20 * time.Millisecond):
	}
	g.Set(1)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("%s returned no error after the interrupt", fn)
		}
		return err
	case <-time.After(10 * time.Second):
		// The guest goroutine keeps spinning; the test binary exits anyway.
		t.Fatalf("%s still running 10s after the interrupt", fn)
		return nil
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// wantTrap fails the test unless err is the unreachable trap of a check.
func wantTrap(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("%s: error %v, want the unreachable trap of a check", what, err)
	}
}

func TestInterrupt(t *testing.T) {
	tests := []struct {
		name     string
		fixture  string
		fn       string
		args     []uint64
		hadStart bool
	}{
		{name: "infinite loop", fixture: "interrupt.wasm", fn: "spin"},
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
			wantTrap(t, tt.fn, callAndInterrupt(t, mod, tt.fn, tt.args...))
		})
	}
}

// The GC test runs in a child process: if a guest did keep a garbage
// collection from stopping the world, the whole process would hang, and
// nothing inside it could report that.
const (
	gcChildEnv  = "WASMGUARD_GC_CHILD"
	goModuleEnv = "WASMGUARD_GO_MODULE" // path of the built Go guest, for the child
)

// TestNoHangUnderGC spins guests while another goroutine forces garbage
// collections back to back, and interrupts them after 20ms, 20 times each
// and with GOMAXPROCS both as it is and 1. Without the exits to Go, the
// first collection that begins while a guest spins waits for it forever,
// and so does the process.
func TestNoHangUnderGC(t *testing.T) {
	if os.Getenv(gcChildEnv) != "" {
		gcChild(t)
		return
	}
	env := append(os.Environ(), gcChildEnv+"=1")
	if !testing.Short() {
		path := filepath.Join(t.TempDir(), "plugin.wasm")
		if err := os.WriteFile(path, mustGoModule(t), 0o644); err != nil {
			t.Fatal(err)
		}
		env = append(env, goModuleEnv+"="+path)
	}
	const limit = 2 * time.Minute // the child normally takes a few seconds
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNoHangUnderGC$", "-test.v", "-test.count=1")
	cmd.Env = env
	// On a hang, SIGQUIT makes the child print every goroutine's stack.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the child process hung: still running after %v\n%s", limit, out)
	}
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "collections completed") {
			t.Log(strings.TrimSpace(line))
		}
	}
	t.Logf("child process took %v", time.Since(start).Round(time.Millisecond))
}

func gcChild(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	type guest struct {
		name     string
		compiled wazero.CompiledModule
		init     string // a function to call after instantiation, if any
		fn       string
	}
	compile := func(wasm []byte) wazero.CompiledModule {
		cm, err := r.CompileModule(ctx, mustInstrument(t, wasm).Wasm)
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	guests := []guest{
		{name: "wat", compiled: compile(readFixture(t, "interrupt.wasm")), fn: "spin"},
		{name: "start", compiled: compile(readFixture(t, "start_loop.wasm")), fn: StartExport},
	}
	if path := os.Getenv(goModuleEnv); path != "" {
		wasm, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		guests = append(guests, guest{name: "go", compiled: compile(wasm), init: "_initialize", fn: "spin"})
	}

	for _, procs := range []int{0, 1} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			if procs > 0 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			}
			for _, g := range guests {
				var gcs int64
				var longest time.Duration
				for range 20 {
					mod, err := r.InstantiateModule(ctx, g.compiled, noStart().WithName(""))
					if err != nil {
						t.Fatal(err)
					}
					if g.init != "" {
						if _, err := mod.ExportedFunction(g.init).Call(ctx); err != nil {
							t.Fatalf("%s: %v", g.init, err)
						}
					}
					start := time.Now()
					gcs += spinUnderGC(t, mod, g.fn)
					longest = max(longest, time.Since(start))
					mod.Close(ctx)
				}
				t.Logf("%s guest, GOMAXPROCS %d: %d collections completed while it spun, in 20 runs of 20ms; the longest run took %v",
					g.name, runtime.GOMAXPROCS(0), gcs, longest.Round(time.Microsecond))
				// With a single P, the collector gets the P only when the
				// scheduler takes it from the guest, every 10ms, and a
				// whole cycle needs more turns than fit in 20ms; that the
				// timer fired at all shows the guest did give it up.
				if gcs == 0 && runtime.GOMAXPROCS(0) > 1 {
					t.Errorf("%s guest: no garbage collection completed while it spun", g.name)
				}
			}
		})
	}
}

// spinUnderGC calls fn, which must loop until interrupted, while another
// goroutine runs garbage collections, interrupts it after 20ms and returns
// how many collections completed meanwhile.
func spinUnderGC(t *testing.T, mod api.Module, fn string) int64 {
	t.Helper()
	var gcs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.GC()
			gcs.Add(1)
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	before := gcs.Load()
	wantTrap(t, fn, callAndInterrupt(t, mod, fn))
	return gcs.Load() - before
}

// TestRecursionLimit checks that unbounded recursion stops at the depth
// limit, with the check's trap, before the native stack takes much of the
// host's memory.
func TestRecursionLimit(t *testing.T) {
	ctx := context.Background()
	res := mustInstrument(t, readFixture(t, "interrupt.wasm"))
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.InstantiateWithConfig(ctx, res.Wasm, noStart())
	if err != nil {
		t.Fatal(err)
	}
	f := mod.ExportedFunction("recurse")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	within(t, 10*time.Second, "recurse", func() { _, err = f.Call(ctx, 0) })
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	wantTrap(t, "recurse", err)
	if d := depthOf(t, mod); d != MaxDepth+1 {
		t.Errorf("depth %d after the trap, want %d: the trap was not the depth check's", d, MaxDepth+1)
	}
	if g := globalOf(t, mod, InterruptExport).Get(); g != 0 {
		t.Errorf("interrupt set to %d", g)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("trapped after %v; Go heap allocated meanwhile: %.1f MB", elapsed.Round(time.Microsecond), float64(alloc)/1e6)
	if alloc > 16<<20 {
		t.Errorf("the call allocated %d bytes of Go heap, want under 16 MiB", alloc)
	}
}

// depthProbes instantiates wasm, depth.wasm or its instrumented version, in
// a runtime of its own, with an "env" whose probe records the depth global
// (0 when there is none) and whose reenter calls the guest's "leaf".
func depthProbes(t *testing.T, wasm []byte) (api.Module, *[]uint32) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, featuresConfig())
	t.Cleanup(func() { r.Close(ctx) })
	probes := new([]uint32)
	_, err := r.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module) {
		d := uint32(0)
		if g := m.ExportedGlobal(DepthExport); g != nil {
			d = uint32(g.Get())
		}
		*probes = append(*probes, d)
	}).Export("probe").
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module) {
		if _, err := m.ExportedFunction("leaf").Call(ctx); err != nil {
			panic(err)
		}
	}).Export("reenter").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateWithConfig(ctx, wasm, noStart())
	if err != nil {
		t.Fatal(err)
	}
	return mod, probes
}

// TestDepthBookkeeping calls functions that leave in every way there is,
// many times, and checks that they compute what they did before, that the
// depth global counts exactly the guest frames on the stack while they
// run, and that it is back to zero after every call.
func TestDepthBookkeeping(t *testing.T) {
	ctx := context.Background()
	orig := readFixture(t, "depth.wasm")
	res := mustInstrument(t, orig)
	want, _ := depthProbes(t, orig)
	got, probes := depthProbes(t, res.Wasm)

	one := []uint32{1}
	all := []uint32{1, 2, 1, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 52, 1}
	calls := []struct {
		fn     string
		args   []uint64
		probes []uint32 // the depths that env.probe sees
	}{
		{"leaf", nil, one},
		{"ii", nil, one},
		{"tail", []uint64{0}, one},
		{"tail", []uint64{100000}, one}, // deeper than MaxDepth, in tail calls
		{"tail_leaf", []uint64{5}, nil},
		{"deep", []uint64{0}, one},
		{"deep", []uint64{100}, []uint32{101}},
		{"deep", []uint64{MaxDepth - 1}, []uint32{MaxDepth}},
	}
	for x := range uint64(6) {
		for _, fn := range []string{"ret", "ret_void", "br_fn", "br_if_fn", "br_table_fn", "pair", "three", "all"} {
			p := one
			if fn == "all" {
				p = all
			}
			calls = append(calls, struct {
				fn     string
				args   []uint64
				probes []uint32
			}{fn, []uint64{x}, p})
		}
	}
	for round := range 50 {
		for _, c := range calls {
			*probes = (*probes)[:0]
			wantRes, wantErr := want.ExportedFunction(c.fn).Call(ctx, c.args...)
			gotRes, gotErr := got.ExportedFunction(c.fn).Call(ctx, c.args...)
			if wantErr != nil || gotErr != nil {
				t.Fatalf("%s%v: error %v; original: %v", c.fn, c.args, gotErr, wantErr)
			}
			if !slices.Equal(gotRes, wantRes) {
				t.Errorf("%s%v = %v; original gives %v", c.fn, c.args, gotRes, wantRes)
			}
			if !slices.Equal(*probes, c.probes) {
				t.Errorf("%s%v: depths seen inside %v, want %v", c.fn, c.args, *probes, c.probes)
			}
			if d := depthOf(t, got); d != 0 {
				t.Fatalf("round %d, %s%v: depth %d after the call, want 0", round, c.fn, c.args, d)
			}
		}
	}
	if g, w := got.ExportedGlobal("calls").Get(), want.ExportedGlobal("calls").Get(); g != w {
		t.Errorf("global calls = %d, original %d", g, w)
	}

	// One frame more than MaxDepth traps in the depth check; the original
	// goes on.
	if _, err := want.ExportedFunction("deep").Call(ctx, MaxDepth); err != nil {
		t.Fatalf("original deep(%d): %v", MaxDepth, err)
	}
	*probes = (*probes)[:0]
	_, err := got.ExportedFunction("deep").Call(ctx, MaxDepth)
	wantTrap(t, fmt.Sprintf("deep(%d)", MaxDepth), err)
	if len(*probes) != 0 {
		t.Errorf("probes %v: the recursion reached the bottom", *probes)
	}
	if d := depthOf(t, got); d != MaxDepth+1 {
		t.Errorf("depth %d after the trap, want %d", d, MaxDepth+1)
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
	if d := depthOf(t, got); d != 0 {
		t.Fatalf("depth %d after the start function, want 0", d)
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
		if (gotErr == nil) != (wantErr == nil) || !slices.Equal(gotRes, wantRes) {
			t.Errorf("%s%v = %v, %v; original gives %v, %v", c.fn, c.args, gotRes, gotErr, wantRes, wantErr)
		}
		if d := depthOf(t, got); gotErr == nil && d != 0 {
			t.Fatalf("%s%v: depth %d after the call, want 0", c.fn, c.args, d)
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

// goInstance instantiates a Go wasip1 module, instrumented or not, in a
// runtime of its own and runs its _initialize. ctx may carry a function
// listener factory.
func goInstance(tb testing.TB, ctx context.Context, wasm []byte) api.Module {
	tb.Helper()
	r := wazero.NewRuntime(context.Background())
	tb.Cleanup(func() { r.Close(context.Background()) })
	wasi_snapshot_preview1.MustInstantiate(context.Background(), r)
	mod, err := r.InstantiateWithConfig(ctx, wasm, noStart())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
		tb.Fatalf("_initialize: %v", err)
	}
	return mod
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

	mod := goInstance(t, ctx, res.Wasm)
	if d := depthOf(t, mod); d != 0 {
		t.Fatalf("depth %d after _initialize, want 0", d)
	}
	for _, c := range []struct{ a, b, want int32 }{{2, 3, 5}, {-7, 1000, 993}, {40, 0, 40}} {
		out, err := mod.ExportedFunction("add").Call(ctx, api.EncodeI32(c.a), api.EncodeI32(c.b))
		if err != nil {
			t.Fatalf("add(%d, %d): %v", c.a, c.b, err)
		}
		if got := api.DecodeI32(out[0]); got != c.want {
			t.Errorf("add(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
		if d := depthOf(t, mod); d != 0 {
			t.Fatalf("depth %d after add, want 0", d)
		}
	}
	out, err := mod.ExportedFunction("recurse").Call(ctx, 10000)
	if err != nil || api.DecodeI32(out[0]) != 10000 {
		t.Fatalf("recurse(10000) = %v, %v", out, err)
	}

	// And a Go loop that never ends is stopped too.
	wantTrap(t, "spin", callAndInterrupt(t, mod, "spin"))
}

// depthListener follows the guest's call stack through wazero's function
// listeners, independently of the instrumentation, and checks the depth
// global against it at every function entry and exit.
type depthListener struct {
	t        testing.TB
	mod      api.Module // set once instantiated
	depth    uint32
	max      uint32
	calls    int
	mismatch int
}

func (l *depthListener) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if _, _, imported := def.Import(); imported {
		return nil
	}
	return l
}

func (l *depthListener) compare(def api.FunctionDefinition, when string) {
	if l.mod == nil {
		return
	}
	if g := uint32(l.mod.ExportedGlobal(DepthExport).Get()); g != l.depth {
		if l.mismatch++; l.mismatch <= 5 {
			l.t.Errorf("%s %s: depth global %d, but %d frames on the stack", when, def.DebugName(), g, l.depth)
		}
	}
}

func (l *depthListener) Before(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	l.compare(def, "entering")
	l.depth++
	l.max = max(l.max, l.depth)
	l.calls++
}

func (l *depthListener) After(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64) {
	l.depth--
	l.compare(def, "leaving")
}

func (l *depthListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) { l.depth-- }

// TestGoDepth runs Go code with a function listener that counts frames
// itself, to check the depth global against it on every call a real
// compiler's output makes, and to see how deep Go guests go.
func TestGoDepth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program for wasip1")
	}
	res := mustInstrument(t, mustGoModule(t))
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	l := &depthListener{t: t}
	mod, err := r.InstantiateWithConfig(experimental.WithFunctionListenerFactory(ctx, l), res.Wasm, noStart())
	if err != nil {
		t.Fatal(err)
	}
	l.mod = mod
	for _, c := range []struct {
		fn   string
		args []uint64
	}{
		{"_initialize", nil},
		{"add", []uint64{2, 3}},
		{"add", []uint64{0, 100000}},
		{"recurse", []uint64{10}},
		{"recurse", []uint64{1000}},
		{"recurse", []uint64{10000}},
	} {
		l.max, l.calls = 0, 0
		_, err := mod.ExportedFunction(c.fn).Call(ctx, c.args...)
		if err != nil {
			t.Fatalf("%s%v: %v", c.fn, c.args, err)
		}
		t.Logf("%s%v: %d calls, at most %d frames deep", c.fn, c.args, l.calls, l.max)
		if d := depthOf(t, mod); d != 0 {
			t.Errorf("%s%v: depth %d after the call, want 0", c.fn, c.args, d)
		}
	}

	// Go's wasm port unwinds the native stack when it grows a goroutine's
	// stack, but between two growths every Go call is a native frame:
	// recursion 100000 deep takes more than MaxDepth of them in a row.
	mod = goInstance(t, ctx, res.Wasm)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = mod.ExportedFunction("recurse").Call(ctx, 100000)
	runtime.ReadMemStats(&after)
	wantTrap(t, "recurse(100000)", err)
	if d := depthOf(t, mod); d != MaxDepth+1 {
		t.Errorf("recurse(100000): depth %d after the trap, want %d", d, MaxDepth+1)
	}
	t.Logf("recurse(100000) trapped at the depth limit; Go heap allocated meanwhile: %.1f MB", float64(after.TotalAlloc-before.TotalAlloc)/1e6)
}

// TestSafePointInterval measures how long a guest runs in native code
// between two exits to Go: it counts the checks a call executes with the
// countdown set beyond what the call needs, and multiplies the time per
// check by Countdown. Loops that do nothing else are the worst case; Go
// code, with its calls and heavier loops, takes longer per check.
//
// The countdown must not be set out of reach altogether: that would bring
// back the hazard it removes. A collection that starts while the guest
// runs would stop the world, timer included, until the countdown ran out,
// 2^31 checks (seconds) later.
func TestSafePointInterval(t *testing.T) {
	const reach = 1 << 26 // 20ms of the tightest loop is well under this
	type guest struct {
		name string
		wasm func() []byte
		init string
		fn   string
		args []uint64 // a call that returns; otherwise fn spins until interrupted
	}
	guests := []guest{
		{name: "empty loop (interrupt.wasm spin)", wasm: func() []byte { return readFixture(t, "interrupt.wasm") }, fn: "spin"},
		{name: "global increment loop (start_loop.wasm)", wasm: func() []byte { return readFixture(t, "start_loop.wasm") }, fn: StartExport},
	}
	if !testing.Short() {
		goWasm := func() []byte { return mustGoModule(t) }
		guests = append(guests,
			guest{name: "Go loop (goplugin spin)", wasm: goWasm, init: "_initialize", fn: "spin"},
			guest{name: "Go appends (goplugin add(0, 100000))", wasm: goWasm, init: "_initialize", fn: "add", args: []uint64{0, 100000}},
			guest{name: "Go recursion (goplugin recurse(10000))", wasm: goWasm, init: "_initialize", fn: "recurse", args: []uint64{10000}},
		)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled := map[string]wazero.CompiledModule{} // by the wasm's bytes
	for _, g := range guests {
		wasm := g.wasm()
		cm, ok := compiled[string(wasm)]
		if !ok {
			var err error
			if cm, err = r.CompileModule(ctx, mustInstrument(t, wasm).Wasm); err != nil {
				t.Fatal(err)
			}
			compiled[string(wasm)] = cm
		}
		// The best of a few calls: the machine may be busy with other
		// things, which is not guest time. A spinning guest's instance is
		// spent after one call; a returning one is called again through
		// the same api.Function, so that wazero's native stack, grown by
		// the first call, need not grow again.
		perCheck, checks, samples := math.Inf(1), int64(0), 0
		for attempt := 0; attempt < 10 && samples < 5; attempt++ {
			mod, err := r.InstantiateModule(ctx, cm, noStart().WithName(""))
			if err != nil {
				t.Fatal(err)
			}
			if g.init != "" {
				if _, err := mod.ExportedFunction(g.init).Call(ctx); err != nil {
					t.Fatal(err)
				}
			}
			countdown := globalOf(t, mod, CountdownExport)
			f := mod.ExportedFunction(g.fn)
			for samples < 5 {
				runtime.GC() // so that the next one is unlikely to start during the call
				countdown.Set(reach)
				start := time.Now()
				if g.args == nil {
					wantTrap(t, g.fn, callAndInterrupt(t, mod, g.fn))
				} else if _, err := f.Call(ctx, g.args...); err != nil {
					t.Fatalf("%s: %v", g.fn, err)
				}
				elapsed := time.Since(start)
				if left := int32(countdown.Get()); left > Countdown {
					checks = reach - int64(left)
					perCheck = min(perCheck, float64(elapsed)/float64(checks))
					samples++
				} else {
					// A collection began while the guest ran without
					// exits and stopped the world, the interrupt's
					// timer with it, until the countdown ran out.
					t.Logf("%s: the countdown ran out after %v; measuring again", g.name, elapsed)
				}
				if g.args == nil {
					break // the instance is spent
				}
			}
			mod.Close(ctx)
		}
		if samples == 0 {
			t.Errorf("%s: no measurement", g.name)
			continue
		}
		interval := time.Duration(perCheck * Countdown)
		t.Logf("%s: %d checks, %.2f ns each: an exit to Go every %v", g.name, checks, perCheck, interval)
		if interval > time.Millisecond {
			t.Errorf("%s: %v between exits to Go, want well under a millisecond", g.name, interval)
		}
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

// BenchmarkGoCall compares calls into a Go wasip1 module's exported
// functions, plain and instrumented, the way the host makes them: add,
// which appends to a slice in a loop, and mix, a loop that neither calls
// nor allocates.
func BenchmarkGoCall(b *testing.B) {
	wasm := mustGoModule(b)
	res, err := Instrument(wasm)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		fn   string
		args []int32
	}{
		{"add(2,3)", "add", []int32{2, 3}},
		{"add(0,1000)", "add", []int32{0, 1000}},
		{"mix(1000)", "mix", []int32{1000}},
	} {
		for _, v := range []struct {
			name string
			wasm []byte
		}{{"plain", wasm}, {"instrumented", res.Wasm}} {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				mod := goInstance(b, ctx, v.wasm)
				f := mod.ExportedFunction(c.fn)
				stack := make([]uint64, len(c.args))
				for b.Loop() {
					for i, a := range c.args {
						stack[i] = api.EncodeI32(a)
					}
					if err := f.CallWithStack(ctx, stack); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLoop measures an empty loop's iteration plain, with the checks
// but the countdown never reaching zero, and as instrumented: the cost of
// a check, and what the exits to Go add. The last two share an instance:
// the same code at the same address, since where wazero happens to place
// a loop this small changes its speed by more than the exits do.
func BenchmarkLoop(b *testing.B) {
	const n = 1 << 16
	ctx := context.Background()
	wasm := readFixture(b, "interrupt.wasm")
	res, err := Instrument(wasm)
	if err != nil {
		b.Fatal(err)
	}
	instantiate := func(wasm []byte) api.Module {
		r := wazero.NewRuntime(ctx)
		b.Cleanup(func() { r.Close(ctx) })
		mod, err := r.InstantiateWithConfig(ctx, wasm, noStart())
		if err != nil {
			b.Fatal(err)
		}
		return mod
	}
	plain, instrumented := instantiate(wasm), instantiate(res.Wasm)
	for _, v := range []struct {
		name    string
		mod     api.Module
		noExits bool
	}{{"plain", plain, false}, {"checks-without-exits", instrumented, true}, {"instrumented", instrumented, false}} {
		b.Run(v.name, func(b *testing.B) {
			f := v.mod.ExportedFunction("count")
			var countdown api.MutableGlobal
			if v.noExits {
				countdown = globalOf(b, v.mod, CountdownExport)
			}
			stack := make([]uint64, 1)
			for b.Loop() {
				if countdown != nil {
					countdown.Set(math.MaxInt32) // 2^31 checks away: no exit in this call
				}
				stack[0] = n
				if err := f.CallWithStack(ctx, stack); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
		})
	}
}

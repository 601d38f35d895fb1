//go:build !wasip1

package main

// These benchmarks measure what the host pays per decision-cache miss
// inside the plugin: the WebAssembly build of the policy, driven through
// the raw exports under plain wazero. Go compiled to wasm runs several
// times slower than native and punishes calls and loop iterations that
// native code hardly notices, so native benchmarks alone can mislead.
//
//	go test -run '^$' -bench Wasm -count 6 ./plugins/zones
//
// To compare builds (say, before and after a change), set
// ZONES_BENCH_WASM to a plugin built as in main.go; its answers are still
// checked against the policy package in this tree.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/plugins/zones/policy"
)

// A 60-byte user-space path, as typical of files a browser or an editor
// touches.
const benchUserPath = "/u000000000001/Documents/reports/2026/q3/summary-final-1.txt"

// benchWasm is the plugin built once per test binary: -count runs the
// benchmark functions repeatedly, and a build takes seconds.
var benchWasm struct {
	once sync.Once
	wasm []byte
	err  error
	out  []byte
}

func pluginForBench(b *testing.B) []byte {
	b.Helper()
	if testing.Short() {
		b.Skip("builds the plugin with the go command")
	}
	if path := os.Getenv("ZONES_BENCH_WASM"); path != "" {
		wasm, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return wasm
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command in PATH")
	}
	benchWasm.once.Do(func() {
		dir, err := os.MkdirTemp("", "zones-bench-")
		if err != nil {
			benchWasm.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "zones.wasm")
		cmd := exec.Command(gocmd, "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-buildid=", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if benchWasm.out, benchWasm.err = cmd.CombinedOutput(); benchWasm.err != nil {
			return
		}
		benchWasm.wasm, benchWasm.err = os.ReadFile(out)
	})
	if benchWasm.err != nil {
		b.Fatalf("building the plugin: %v\n%s", benchWasm.err, benchWasm.out)
	}
	return benchWasm.wasm
}

// benchInstance is the plugin instantiated with the default config.
type benchInstance struct {
	ctx              context.Context
	mem              api.Memory
	ptr              uint32 // the guest's I/O buffer
	decide, classify api.Function
	stack            []uint64
}

// buf returns a view of the guest's I/O buffer. It is taken afresh for
// each call because the guest's memory may grow, which moves it.
func (in *benchInstance) buf() []byte {
	b, _ := in.mem.Read(in.ptr, abi.MinBufferSize)
	return b
}

func newBenchInstance(b *testing.B) *benchInstance {
	b.Helper()
	wasm := pluginForBench(b)
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	b.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions(abi.ExportInitialize))
	if err != nil {
		b.Fatalf("instantiating: %v", err)
	}
	call := func(name string, args ...uint64) uint64 {
		res, err := mod.ExportedFunction(name).Call(ctx, args...)
		if err != nil {
			b.Fatalf("calling %s: %v", name, err)
		}
		return res[0]
	}
	in := &benchInstance{
		ctx: ctx, mem: mod.Memory(), ptr: uint32(call(abi.ExportBuffer)), stack: make([]uint64, 1),
		decide: mod.ExportedFunction(abi.ExportDecide), classify: mod.ExportedFunction(abi.ExportClassify),
	}
	if _, ok := in.mem.Read(in.ptr, abi.MinBufferSize); !ok {
		b.Fatal("the guest buffer lies outside its memory")
	}
	if rc := int32(call(abi.ExportInit, 0)); rc != 0 { // empty config: the defaults
		b.Fatalf("init: %s: %s", abi.ErrorCode(-rc), abi.ReadErrorMessage(in.buf()))
	}
	return in
}

// run calls f with a request of n bytes already in the buffer.
func (in *benchInstance) run(b *testing.B, f api.Function, n int) int32 {
	in.stack[0] = uint64(n)
	if err := f.CallWithStack(in.ctx, in.stack); err != nil {
		b.Fatal(err)
	}
	rc := int32(in.stack[0])
	if rc < 0 {
		b.Fatalf("plugin error %s: %s", abi.ErrorCode(-rc), abi.ReadErrorMessage(in.buf()))
	}
	return rc
}

func BenchmarkWasmDecide(b *testing.B) {
	in := newBenchInstance(b)
	native, err := policy.New(policy.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	const st = "1i:thunderbird"
	cases := []struct {
		name string
		req  abi.DecideRequest
	}{
		{"guarded/file.write/user", abi.DecideRequest{Op: abi.OpFileWrite, Zone: policy.ZoneGuarded, State: st, Object: benchUserPath}},
		{"guarded/file.read/user", abi.DecideRequest{Op: abi.OpFileRead, Zone: policy.ZoneGuarded, State: st, Object: benchUserPath}},
		{"system/file.write/user", abi.DecideRequest{Op: abi.OpFileWrite, Zone: policy.ZoneSystem, Object: benchUserPath}},
		{"guarded/process.exec/system", abi.DecideRequest{Op: abi.OpProcessExec, Zone: policy.ZoneGuarded, State: st, Object: "/usr/bin/python3"}},
		{"guarded/registry.write/run", abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: policy.ZoneGuarded, State: st, Object: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`}},
		{"guarded/net.connect/tcp443", abi.DecideRequest{Op: abi.OpNetConnect, Zone: policy.ZoneGuarded, State: st, Proto: abi.ProtoTCP, Port: 443}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// The answer must be the native one, or the numbers measure
			// something else.
			n, err := c.req.Encode(in.buf())
			if err != nil {
				b.Fatal(err)
			}
			rc := in.run(b, in.decide, n)
			var got abi.DecideResponse
			if err := got.Decode(in.buf()[:rc], c.req.Op); err != nil {
				b.Fatal(err)
			}
			if want := native.Decide(&c.req); got != want {
				b.Fatalf("wasm %+v, native %+v", got, want)
			}
			for b.Loop() {
				// The host encodes each request into the buffer: so
				// does the benchmark, since the answer overwrites it.
				n, _ := c.req.Encode(in.buf())
				in.run(b, in.decide, n)
			}
		})
	}
}

func BenchmarkWasmClassify(b *testing.B) {
	in := newBenchInstance(b)
	native, err := policy.New(policy.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		req  abi.ClassifyRequest
	}{
		{"system", abi.ClassifyRequest{Exe: "/usr/bin/python3", CreatorZone: policy.ZoneSystem, CreatorExe: "/usr/bin/bash"}},
		{"user", abi.ClassifyRequest{Exe: benchUserPath, CreatorZone: policy.ZoneSystem, CreatorExe: "/usr/bin/bash"}},
		{"guarded-app", abi.ClassifyRequest{Exe: `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`, CreatorZone: policy.ZoneSystem, CreatorExe: `C:\Windows\explorer.exe`}},
		{"inherited", abi.ClassifyRequest{Exe: `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, CreatorZone: policy.ZoneGuarded, CreatorState: "1i:OUTLOOK.EXE", CreatorExe: `C:\x\AcroRd32.exe`}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n, err := c.req.Encode(in.buf())
			if err != nil {
				b.Fatal(err)
			}
			rc := in.run(b, in.classify, n)
			var got abi.ClassifyResponse
			if err := got.Decode(in.buf()[:rc]); err != nil {
				b.Fatal(err)
			}
			if want := native.Classify(&c.req); got != want {
				b.Fatalf("wasm %+v, native %+v", got, want)
			}
			for b.Loop() {
				n, _ := c.req.Encode(in.buf())
				in.run(b, in.classify, n)
			}
		})
	}
}

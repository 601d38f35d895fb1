package wasmguard

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// FuzzInstrument checks that Instrument never panics, never modifies its
// input, is deterministic, and never turns a module wazero accepts into
// one it rejects. Its output must decode with every return rewritten, the
// same loops and tail calls as the input, and the three globals in place;
// and when the module can be instantiated on its own, every exported
// function that returns must leave the depth at zero.
//
//	go test ./host/internal/wasmguard/ -run '^$' -fuzz FuzzInstrument -fuzztime 1m
func FuzzInstrument(f *testing.F) {
	fixtures, err := filepath.Glob(filepath.Join("testdata", "*.wasm"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range fixtures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(smallModule())
	f.Add(wasmModule())
	f.Add(wasmModule(custom("a", 1), typeSec, oneFuncSec, memSec, sec(secStart, leb(0)),
		sec(secCode, vec(fn(0x03, 0x03, 0x02, 0x40, 0x0b, 0x0b, 0x0b)))))
	// (func (export "f") (result i32 i64) (block (br_if 1 (i32.const 1) (i64.const 2) (i32.const 0)) (return (i32.const 3) (i64.const 4))) (unreachable))
	f.Add(wasmModule(
		sec(secType, vec([]byte{0x60, 0x00, 0x02, 0x7f, 0x7e})),
		oneFuncSec, memSec,
		sec(secExport, vec(cat(str("f"), []byte{kindFunc, 0x00}))),
		sec(secCode, vec(fn(0x02, 0x40, 0x41, 0x01, 0x42, 0x02, 0x41, 0x00, 0x0d, 0x01, 0x1a, 0x1a, 0x41, 0x03, 0x42, 0x04, 0x0f, 0x0b, 0x00, 0x0b))),
	))

	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, featuresConfig())
	f.Cleanup(func() { r.Close(ctx) })

	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		res, err := Instrument(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("Instrument modified its input")
		}
		if err != nil {
			if res.Wasm != nil {
				t.Fatal("output returned along with an error")
			}
			return
		}
		again, err := Instrument(in)
		if err != nil || !bytes.Equal(again.Wasm, res.Wasm) || again.HadStart != res.HadStart || again.Checks != res.Checks {
			t.Fatalf("second run differs: %v", err)
		}
		checkOutput(t, in, res.Wasm)
		if !compiles(ctx, r, in) {
			return
		}
		cm, err := r.CompileModule(ctx, res.Wasm)
		if err != nil {
			t.Fatalf("wazero compiles the input but not the output: %v", err)
		}
		defer cm.Close(ctx)
		if len(cm.ImportedFunctions()) > 0 || len(cm.ImportedMemories()) > 0 {
			return // nothing to link it with
		}
		mod, err := r.InstantiateModule(ctx, cm, noStart().WithName(""))
		if err != nil {
			return // a data or element segment out of bounds, an imported global, ...
		}
		defer mod.Close(ctx)
		runExports(t, mod)
	})
}

// checkOutput decodes Instrument's output for in and checks what must
// hold of it whatever in is.
func checkOutput(t *testing.T, in, out []byte) {
	t.Helper()
	m, err := scan(in, false)
	if err != nil {
		t.Fatalf("Instrument accepted a module scan rejects: %v", err)
	}
	o, err := scan(out, true)
	if err != nil {
		t.Fatalf("the output does not decode: %v", err)
	}
	count := func(m *module, kind uint8) (n int) {
		for _, e := range m.edits {
			if e.kind == kind {
				n++
			}
		}
		return n
	}
	if n := count(o, editReturn); n != 0 {
		t.Errorf("%d returns left in the output", n)
	}
	if len(o.bodies) != len(m.bodies) || count(o, editLoop) != count(m, editLoop) || count(o, editTailCall) != count(m, editTailCall) {
		t.Errorf("output has %d bodies, %d loops and %d tail calls; input %d, %d and %d",
			len(o.bodies), count(o, editLoop), count(o, editTailCall), len(m.bodies), count(m, editLoop), count(m, editTailCall))
	}
	if want := len(m.types) + len(m.newTypes); len(o.types) != want {
		t.Errorf("output has %d types, want %d", len(o.types), want)
	}
	if o.definedGlobals != m.definedGlobals+3 || o.hasStart {
		t.Errorf("output defines %d globals (input %d), start section %v", o.definedGlobals, m.definedGlobals, o.hasStart)
	}
}

// runExports calls every exported function of an instrumented module with
// zero arguments, under a short deadline, and checks the globals: depth
// back to zero after every call that returns.
func runExports(t *testing.T, mod api.Module) {
	t.Helper()
	interrupt := globalOf(t, mod, InterruptExport)
	depth := globalOf(t, mod, DepthExport)
	countdown := globalOf(t, mod, CountdownExport)
	if interrupt.Get() != 0 || depth.Get() != 0 || countdown.Get() != Countdown {
		t.Fatalf("globals after instantiation: interrupt %d, depth %d, countdown %d", interrupt.Get(), depth.Get(), countdown.Get())
	}
	timer := time.AfterFunc(time.Hour, func() { interrupt.Set(1) })
	defer timer.Stop()
	for name, def := range mod.ExportedFunctionDefinitions() {
		timer.Reset(5 * time.Millisecond)
		_, err := mod.ExportedFunction(name).Call(context.Background(), make([]uint64, len(def.ParamTypes()))...)
		if !timer.Stop() || err != nil {
			return // interrupted or trapped: the instance is spent
		}
		if d := depth.Get(); d != 0 {
			t.Fatalf("%s returned leaving depth %d", name, d)
		}
		if c := int32(countdown.Get()); c <= 0 || c > Countdown {
			t.Fatalf("%s returned leaving countdown %d", name, c)
		}
	}
}

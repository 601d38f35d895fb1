package wasmguard

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzInstrument checks that Instrument never panics, never modifies its
// input, is deterministic, and never turns a module wazero accepts into
// one it rejects.
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
	f.Add(wasmModule(custom("a", 1), typeSec, oneFuncSec, sec(secStart, leb(0)),
		sec(secCode, vec(fn(0x03, 0x03, 0x02, 0x40, 0x0b, 0x0b, 0x0b)))))

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
		if compiles(ctx, r, in) {
			if cm, err := r.CompileModule(ctx, res.Wasm); err != nil {
				t.Fatalf("wazero compiles the input but not the output: %v", err)
			} else {
				cm.Close(ctx)
			}
		}
	})
}

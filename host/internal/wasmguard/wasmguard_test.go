package wasmguard

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// Helpers to hand-assemble modules, so that each test shows the exact bytes
// it feeds in.

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func leb(v uint32) []byte { return appendU32(nil, v) }

// vec is a vector: its element count, then the elements.
func vec(items ...[]byte) []byte { return cat(leb(uint32(len(items))), cat(items...)) }

func str(s string) []byte { return cat(leb(uint32(len(s))), []byte(s)) }

func sec(id byte, contents ...[]byte) []byte {
	c := cat(contents...)
	return cat([]byte{id}, leb(uint32(len(c))), c)
}

func custom(name string, data ...byte) []byte { return sec(secCustom, str(name), data) }

func wasmModule(sections ...[]byte) []byte { return cat(wasmHeader, cat(sections...)) }

// fn is a function body: no locals, then the instructions.
func fn(instrs ...byte) []byte { return sized(cat([]byte{0x00}, instrs)) }

func sized(b []byte) []byte { return cat(leb(uint32(len(b))), b) }

func sleb(v int64) []byte { return appendSigned(nil, v) }

var (
	voidType   = []byte{0x60, 0x00, 0x00} // (func)
	typeSec    = sec(secType, vec(voidType))
	oneFuncSec = sec(secFunction, vec([]byte{0x00}))
	memSec     = sec(secMemory, vec([]byte{0x00, 0x01})) // (memory 1)
)

// The inserted sequences, spelled out for the globals starting at first
// (interrupt, countdown, depth); TestSequences checks them against the
// package's.

func check(first uint32) []byte {
	i, c := leb(first), leb(first+1)
	return cat(
		[]byte{0x23}, i, []byte{0x04, 0x40, 0x00, 0x0b}, // global.get interrupt; if; unreachable; end
		[]byte{0x23}, c, []byte{0x41, 0x01, 0x6b, 0x24}, c, // global.get cd; i32.const 1; i32.sub; global.set cd
		[]byte{0x23}, c, []byte{0x45, 0x04, 0x40}, // global.get cd; i32.eqz; if
		[]byte{0x41}, sleb(Countdown), []byte{0x24}, c, // i32.const Countdown; global.set cd
		[]byte{0x41, 0x00, 0x40, 0x00, 0x1a, 0x0b}, // i32.const 0; memory.grow 0; drop; end
	)
}

func enter(first uint32) []byte {
	d := leb(first + 2)
	return cat(
		[]byte{0x23}, d, []byte{0x41, 0x01, 0x6a, 0x24}, d, // global.get depth; i32.const 1; i32.add; global.set depth
		[]byte{0x23}, d, []byte{0x41}, sleb(MaxDepth), // global.get depth; i32.const MaxDepth
		[]byte{0x4b, 0x04, 0x40, 0x00, 0x0b}, // i32.gt_u; if; unreachable; end
	)
}

func leave(first uint32) []byte {
	d := leb(first + 2)
	return cat([]byte{0x23}, d, []byte{0x41, 0x01, 0x6b, 0x24}, d) // global.get depth; i32.const 1; i32.sub; global.set depth
}

// wrapped is what Instrument makes of a function body: the locals, the
// entry sequences, a wrapper block of type bt around instrs (which end
// with the original final end), the decrement and a new final end.
func wrapped(first uint32, locals, bt []byte, instrs ...[]byte) []byte {
	return sized(cat(locals, enter(first), check(first), []byte{0x02}, bt, cat(instrs...), leave(first), []byte{0x0b}))
}

// exports are the appended exports for globals starting at first.
func exports(first uint32) [][]byte {
	return [][]byte{
		cat(str(InterruptExport), []byte{kindGlobal}, leb(first)),
		cat(str(CountdownExport), []byte{kindGlobal}, leb(first+1)),
		cat(str(DepthExport), []byte{kindGlobal}, leb(first+2)),
	}
}

// smallModule is (module (memory 1) (func (export "f") (loop (br 0)))),
// by hand.
func smallModule() []byte {
	return wasmModule(
		typeSec,
		oneFuncSec,
		memSec,
		sec(secExport, vec(cat(str("f"), []byte{kindFunc, 0x00}))),
		sec(secCode, vec(fn(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b))),
	)
}

func TestSequences(t *testing.T) {
	c := newCode(5)
	if want := []byte{
		0x23, 0x05, 0x04, 0x40, 0x00, 0x0b,
		0x23, 0x06, 0x41, 0x01, 0x6b, 0x24, 0x06,
		0x23, 0x06, 0x45, 0x04, 0x40, 0x41, 0x80, 0x20, 0x24, 0x06, 0x41, 0x00, 0x40, 0x00, 0x1a, 0x0b,
	}; Countdown == 4096 && !bytes.Equal(c.check, want) {
		t.Errorf("check\n% x\nwant\n% x", c.check, want)
	}
	if want := []byte{
		0x23, 0x07, 0x41, 0x01, 0x6a, 0x24, 0x07,
		0x23, 0x07, 0x41, 0x80, 0x80, 0x01, 0x4b, 0x04, 0x40, 0x00, 0x0b,
	}; MaxDepth == 16384 && !bytes.Equal(c.enter, want) {
		t.Errorf("enter\n% x\nwant\n% x", c.enter, want)
	}
	if want := []byte{0x23, 0x07, 0x41, 0x01, 0x6b, 0x24, 0x07}; !bytes.Equal(c.leave, want) {
		t.Errorf("leave\n% x\nwant\n% x", c.leave, want)
	}
	for _, first := range []uint32{0, 5, 126, 200, 1 << 20} {
		c := newCode(first)
		if !bytes.Equal(c.check, check(first)) || !bytes.Equal(c.enter, enter(first)) || !bytes.Equal(c.leave, leave(first)) {
			t.Errorf("sequences for globals from %d differ from the test's", first)
		}
	}
	if want := []byte{0x7f, 0x01, 0x41, 0x80, 0x20, 0x0b}; Countdown == 4096 && !bytes.Equal(countdownGlobal, want) {
		t.Errorf("countdown global % x, want % x", countdownGlobal, want)
	}
}

func TestAppendSigned(t *testing.T) {
	for _, tt := range []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{63, []byte{0x3f}},
		{64, []byte{0xc0, 0x00}}, // not 0x40, which is the empty block type
		{65, []byte{0xc1, 0x00}},
		{127, []byte{0xff, 0x00}},
		{128, []byte{0x80, 0x01}},
		{4096, []byte{0x80, 0x20}},
		{8192, []byte{0x80, 0xc0, 0x00}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{-1, []byte{0x7f}},
		{-64, []byte{0x40}},
		{-65, []byte{0xbf, 0x7f}},
		{math.MaxUint32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
	} {
		got := appendSigned(nil, tt.v)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("appendSigned(%d) = % x, want % x", tt.v, got, tt.want)
		}
		r := reader{buf: got, end: len(got)}
		if v, err := r.signed(33); err != nil || v != tt.v || r.pos != len(got) {
			t.Errorf("appendSigned(%d) = % x reads back as %d, %v", tt.v, got, v, err)
		}
	}
}

func mustInstrument(t testing.TB, wasm []byte) Result {
	t.Helper()
	orig := bytes.Clone(wasm)
	res, err := Instrument(wasm)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	if !bytes.Equal(wasm, orig) {
		t.Fatal("Instrument modified its input")
	}
	return res
}

// TestInstrumentBytes spells out the whole expected output for small
// modules, so that every rewritten size and count is checked.
func TestInstrumentBytes(t *testing.T) {
	e := []byte{0x40} // empty block type
	tests := []struct {
		name     string
		in, want []byte
		checks   int
		hadStart bool
	}{
		{
			name: "global and export sections created",
			in:   smallModule(),
			want: wasmModule(
				typeSec,
				oneFuncSec,
				memSec,
				sec(secGlobal, vec(interruptGlobal, countdownGlobal, depthGlobal)),
				sec(secExport, vec(append([][]byte{cat(str("f"), []byte{kindFunc, 0x00})}, exports(0)...)...)),
				sec(secCode, vec(wrapped(0, []byte{0x00}, e,
					[]byte{0x03, 0x40},
					check(0),
					[]byte{0x0c, 0x00, 0x0b, 0x0b},
				))),
			),
			checks: 2,
		},
		{
			name: "existing sections extended and start moved",
			in: wasmModule(
				typeSec,
				sec(secImport, vec(
					cat(str("env"), str("f"), []byte{kindFunc, 0x00}),
					cat(str("env"), str("g"), []byte{kindGlobal, 0x7f, 0x00}),
					cat(str("env"), str("m"), []byte{kindMemory, 0x00, 0x01}),
				)),
				oneFuncSec,
				sec(secGlobal, vec(
					[]byte{0x7e, 0x00, 0x42, 0x03, 0x0b}, // (global i64 (i64.const 3))
				)),
				sec(secExport, vec(cat(str("x"), []byte{kindGlobal, 0x01}))),
				sec(secStart, leb(1)),
				sec(secCode, vec(fn(0x0b))),
			),
			want: wasmModule(
				typeSec,
				sec(secImport, vec(
					cat(str("env"), str("f"), []byte{kindFunc, 0x00}),
					cat(str("env"), str("g"), []byte{kindGlobal, 0x7f, 0x00}),
					cat(str("env"), str("m"), []byte{kindMemory, 0x00, 0x01}),
				)),
				oneFuncSec,
				sec(secGlobal, vec(
					[]byte{0x7e, 0x00, 0x42, 0x03, 0x0b},
					interruptGlobal, countdownGlobal, depthGlobal,
				)),
				// One imported and one defined global before the new ones.
				sec(secExport, vec(append(append(
					[][]byte{cat(str("x"), []byte{kindGlobal, 0x01})},
					exports(2)...),
					cat(str(StartExport), []byte{kindFunc, 0x01}))...)),
				sec(secCode, vec(wrapped(2, []byte{0x00}, e, []byte{0x0b}))),
			),
			checks:   1,
			hadStart: true,
		},
		{
			name: "locals kept before the entry sequences",
			in: wasmModule(typeSec, oneFuncSec, memSec, sec(secCode, vec(sized([]byte{
				0x02, 0x01, 0x7f, 0x03, 0x7e, // locals: 1 i32, 3 i64
				0x0b,
			})))),
			want: wasmModule(
				typeSec,
				oneFuncSec,
				memSec,
				sec(secGlobal, vec(interruptGlobal, countdownGlobal, depthGlobal)),
				sec(secExport, vec(exports(0)...)),
				sec(secCode, vec(wrapped(0, []byte{0x02, 0x01, 0x7f, 0x03, 0x7e}, e, []byte{0x0b}))),
			),
			checks: 1,
		},
		{
			name: "empty module",
			in:   wasmModule(),
			want: wasmModule(
				sec(secGlobal, vec(interruptGlobal, countdownGlobal, depthGlobal)),
				sec(secExport, vec(exports(0)...)),
			),
		},
		{
			// 200 imported globals put the new ones at index 200 and up,
			// whose LEB128 encodings take two bytes, so every sequence
			// grows.
			name: "two-byte global index",
			in: wasmModule(
				typeSec,
				sec(secImport, vec(repeat(200, cat(str("m"), str("g"), []byte{kindGlobal, 0x7f, 0x00}))...)),
				oneFuncSec,
				memSec,
				sec(secCode, vec(fn(0x03, 0x40, 0x0b, 0x0b))),
			),
			want: wasmModule(
				typeSec,
				sec(secImport, vec(repeat(200, cat(str("m"), str("g"), []byte{kindGlobal, 0x7f, 0x00}))...)),
				oneFuncSec,
				memSec,
				sec(secGlobal, vec(interruptGlobal, countdownGlobal, depthGlobal)),
				sec(secExport, vec(exports(200)...)),
				sec(secCode, vec(wrapped(200, []byte{0x00}, e,
					[]byte{0x03, 0x40}, check(200), []byte{0x0b, 0x0b},
				))),
			),
			checks: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustInstrument(t, tt.in)
			if !bytes.Equal(res.Wasm, tt.want) {
				t.Errorf("output:\n% x\nwant:\n% x", res.Wasm, tt.want)
			}
			if res.Checks != tt.checks {
				t.Errorf("Checks = %d, want %d", res.Checks, tt.checks)
			}
			if res.HadStart != tt.hadStart {
				t.Errorf("HadStart = %v, want %v", res.HadStart, tt.hadStart)
			}
		})
	}
}

// TestExitRewrite spells out how the ways out of a function are rewritten
// and how the wrapper block gets its type.
func TestExitRewrite(t *testing.T) {
	e := []byte{0x40}
	i32, i64, f64 := byte(0x7f), byte(0x7e), byte(0x7c)
	functype := func(params, results []byte) []byte {
		return cat([]byte{0x60}, leb(uint32(len(params))), params, leb(uint32(len(results))), results)
	}
	oneFunc := func(types [][]byte, typeIdx uint32, body []byte) []byte {
		return wasmModule(
			sec(secType, vec(types...)),
			sec(secFunction, vec(leb(typeIdx))),
			memSec,
			sec(secCode, vec(body)),
		)
	}
	// The output of oneFunc for a body of instrs (ending with the final
	// end) with wrapper block type bt, and types added to the type section.
	want := func(types [][]byte, typeIdx uint32, bt []byte, instrs ...[]byte) []byte {
		return wasmModule(
			sec(secType, vec(types...)),
			sec(secFunction, vec(leb(typeIdx))),
			memSec,
			sec(secGlobal, vec(interruptGlobal, countdownGlobal, depthGlobal)),
			sec(secExport, vec(exports(0)...)),
			sec(secCode, vec(wrapped(0, []byte{0x00}, bt, instrs...))),
		)
	}
	void := [][]byte{voidType}
	pairType := functype(nil, []byte{i32, i64})
	pairFromI32 := functype([]byte{i32}, []byte{i32, i64})
	many := repeat(64, voidType) // so that the next type index, 64, takes two bytes as an s33
	tests := []struct {
		name     string
		in, want []byte
	}{
		{
			name: "return at depth 0",
			in:   oneFunc(void, 0, fn(0x0f, 0x0b)),
			want: want(void, 0, e, []byte{0x0c, 0x00, 0x0b}),
		},
		{
			name: "return inside block, loop and if",
			in:   oneFunc(void, 0, fn(0x02, 0x40, 0x03, 0x40, 0x41, 0x00, 0x04, 0x40, 0x0f, 0x05, 0x0f, 0x0b, 0x0b, 0x0b, 0x0f, 0x0b)),
			want: want(void, 0, e,
				[]byte{0x02, 0x40, 0x03, 0x40}, check(0),
				[]byte{0x41, 0x00, 0x04, 0x40, 0x0c, 0x03, 0x05, 0x0c, 0x03, 0x0b, 0x0b, 0x0b, 0x0c, 0x00, 0x0b}),
		},
		{
			name: "br, br_if and br_table copied as they are",
			in:   oneFunc(void, 0, fn(0x02, 0x40, 0x0c, 0x01, 0x0b, 0x41, 0x00, 0x0d, 0x00, 0x41, 0x00, 0x0e, 0x01, 0x00, 0x00, 0x0b)),
			want: want(void, 0, e, []byte{0x02, 0x40, 0x0c, 0x01, 0x0b, 0x41, 0x00, 0x0d, 0x00, 0x41, 0x00, 0x0e, 0x01, 0x00, 0x00, 0x0b}),
		},
		{
			name: "tail calls decrement first",
			in:   oneFunc(void, 0, fn(0x12, 0x00, 0x41, 0x00, 0x13, 0x00, 0x00, 0x0b)),
			want: want(void, 0, e, leave(0), []byte{0x12, 0x00, 0x41, 0x00}, leave(0), []byte{0x13, 0x00, 0x00, 0x0b}),
		},
		{
			name: "one result: the value type",
			in:   oneFunc([][]byte{functype(nil, []byte{f64})}, 0, fn(0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x0b)),
			want: want([][]byte{functype(nil, []byte{f64})}, 0, []byte{f64}, []byte{0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x00, 0x0b}),
		},
		{
			name: "two results: the function's own type when it has no parameters",
			in:   oneFunc([][]byte{voidType, pairType}, 1, fn(0x00, 0x0b)),
			want: want([][]byte{voidType, pairType}, 1, []byte{0x01}, []byte{0x00, 0x0b}),
		},
		{
			name: "two results: an existing type without parameters",
			in:   oneFunc([][]byte{pairFromI32, pairType}, 0, fn(0x00, 0x0b)),
			want: want([][]byte{pairFromI32, pairType}, 0, []byte{0x01}, []byte{0x00, 0x0b}),
		},
		{
			name: "two results: a type appended",
			in:   oneFunc([][]byte{pairFromI32}, 0, fn(0x00, 0x0b)),
			want: want([][]byte{pairFromI32, pairType}, 0, []byte{0x01}, []byte{0x00, 0x0b}),
		},
		{
			name: "two results: appended at index 64, a two-byte s33",
			in:   oneFunc(append(slices.Clone(many[:63]), pairFromI32), 63, fn(0x00, 0x0b)),
			want: want(append(append(slices.Clone(many[:63]), pairFromI32), pairType), 63, []byte{0xc0, 0x00}, []byte{0x00, 0x0b}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustInstrument(t, tt.in)
			if !bytes.Equal(res.Wasm, tt.want) {
				t.Errorf("output:\n% x\nwant:\n% x", res.Wasm, tt.want)
			}
		})
	}

	// Functions sharing a result type share the appended type.
	in := wasmModule(
		sec(secType, vec(pairFromI32, functype([]byte{i64}, []byte{i32, i64}), functype(nil, []byte{f64, f64, f64}))),
		sec(secFunction, vec(leb(0), leb(1), leb(2), leb(0))),
		memSec,
		sec(secCode, vec(fn(0x00, 0x0b), fn(0x00, 0x0b), fn(0x00, 0x0b), fn(0x00, 0x0b))),
	)
	res := mustInstrument(t, in)
	m, err := scan(res.Wasm, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.types) != 4 || !bytes.Equal(m.types[3].results, []byte{i32, i64}) || len(m.types[3].params) != 0 {
		t.Errorf("types %v: want one appended [] -> [i32 i64]", m.types)
	}
}

func repeat(n int, b []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestSectionPlacement checks that created sections land in the standard
// order and that custom sections keep their bytes and their places.
func TestSectionPlacement(t *testing.T) {
	a, b, c, d := custom("a", 1, 2, 3), custom("b"), custom("c", 0x03, 0x03), custom("d", 9)
	// The memory is imported, so that there is no memory section to
	// decide where the created sections go.
	memImport := sec(secImport, vec(cat(str("e"), str("m"), []byte{kindMemory, 0x00, 0x00})))
	tests := []struct {
		name string
		in   []byte
		want []string // section ids, or custom sections' bytes
	}{
		{
			name: "after function, before a custom section that precedes code",
			in:   wasmModule(a, typeSec, memImport, b, oneFuncSec, c, sec(secCode, vec(fn(0x0b))), d),
			want: []string{"a", "type", "import", "b", "function", "global", "export", "c", "code", "d"},
		},
		{
			name: "between memory and element, around custom sections",
			in: wasmModule(
				typeSec, oneFuncSec,
				sec(secTable, vec([]byte{0x70, 0x00, 0x01})), a,
				sec(secMemory, vec([]byte{0x00, 0x01})), b,
				sec(secElement, vec()), c,
				sec(secDataCount, leb(0)),
				sec(secCode, vec(fn(0x0b))), d,
			),
			want: []string{"type", "function", "table", "a", "memory", "global", "export", "b", "element", "c", "data count", "code", "d"},
		},
		{
			name: "export created after an existing global section",
			in:   wasmModule(typeSec, memImport, oneFuncSec, sec(secGlobal, vec()), a, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "import", "function", "global", "export", "a", "code"},
		},
		{
			name: "global created before an existing export section",
			in:   wasmModule(typeSec, memImport, oneFuncSec, a, sec(secExport, vec()), b, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "import", "function", "global", "a", "export", "b", "code"},
		},
		{
			name: "start section dropped",
			in:   wasmModule(typeSec, memImport, oneFuncSec, sec(secStart, leb(0)), a, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "import", "function", "global", "export", "a", "code"},
		},
		{
			name: "only custom sections",
			in:   wasmModule(a, b),
			want: []string{"global", "export", "a", "b"},
		},
	}
	customs := map[string][]byte{"a": a, "b": b, "c": c, "d": d}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustInstrument(t, tt.in)
			got := listSections(t, res.Wasm)
			var names []string
			for _, s := range got {
				names = append(names, s.label)
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.want) {
				t.Fatalf("sections %v, want %v", names, tt.want)
			}
			for _, s := range got {
				if s.id == secCustom && !bytes.Equal(s.raw, customs[s.label]) {
					t.Errorf("custom section %s is % x, want % x", s.label, s.raw, customs[s.label])
				}
			}
		})
	}
}

type rawSection struct {
	id    byte
	label string // section name, or a custom section's own name
	raw   []byte // the whole section, id and size included
	end   int    // offset just past the section
}

// listSections splits a module into its sections, independently of the
// package's own scanner.
func listSections(t *testing.T, wasm []byte) []rawSection {
	t.Helper()
	var out []rawSection
	r := reader{buf: wasm, pos: 8, end: len(wasm), what: "module"}
	for r.pos < r.end {
		start := r.pos
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			t.Fatal(err)
		}
		body, err := r.sub(size, "section")
		if err != nil {
			t.Fatal(err)
		}
		s := rawSection{id: id, raw: wasm[start:body.end], end: body.end}
		if id == secCustom {
			name, err := body.name()
			if err != nil {
				t.Fatal(err)
			}
			s.label = string(name)
		} else {
			s.label = sectionNames[id]
		}
		out = append(out, s)
	}
	return out
}

// TestLoopDetection feeds bodies whose immediates contain 0x03, the loop
// opcode, and counts the checks: one for the entry plus one per real loop.
func TestLoopDetection(t *testing.T) {
	tests := []struct {
		name  string
		body  []byte
		loops int
	}{
		{"i32.const 3", []byte{0x41, 0x03, 0x1a}, 0},
		{"i32.const 3 as 5-byte LEB", []byte{0x41, 0x83, 0x80, 0x80, 0x80, 0x00, 0x1a}, 0},
		{"i64.const of 0x03 bytes", []byte{0x42, 0x83, 0x86, 0x8c, 0x98, 0xb0, 0xe0, 0xc0, 0x81, 0x83, 0x00, 0x1a}, 0},
		{"f32.const", []byte{0x43, 0x03, 0x03, 0x03, 0x03, 0x1a}, 0},
		{"f64.const", []byte{0x44, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x1a}, 0},
		{"local.get 3", []byte{0x20, 0x03, 0x1a}, 0},
		{"block type index 3", []byte{0x02, 0x03, 0x0b}, 0},
		{"loop type index 3", []byte{0x03, 0x03, 0x0b}, 1},
		{"loop type index 3 as 5-byte s33", []byte{0x03, 0x83, 0x80, 0x80, 0x80, 0x00, 0x0b}, 1},
		{"loop with value type", []byte{0x03, 0x7f, 0x41, 0x03, 0x0b, 0x1a}, 1},
		{"nested loops", []byte{0x03, 0x40, 0x03, 0x40, 0x0c, 0x01, 0x0b, 0x0b, 0x03, 0x40, 0x0b}, 3},
		{"br_table to 3", []byte{0x02, 0x40, 0x41, 0x00, 0x0e, 0x03, 0x03, 0x03, 0x03, 0x03, 0x0b}, 0},
		{"br 3 and br_if 3", []byte{0x0c, 0x03, 0x0d, 0x03}, 0},
		{"call 3", []byte{0x10, 0x03}, 0},
		{"call_indirect type 3 table 3", []byte{0x11, 0x03, 0x03}, 0},
		{"return_call_indirect", []byte{0x13, 0x03, 0x03}, 0},
		{"i64.load align 3 offset 3", []byte{0x41, 0x00, 0x29, 0x03, 0x03, 0x1a}, 0},
		{"memarg with memory index", []byte{0x41, 0x00, 0x28, 0x42, 0x03, 0x03, 0x1a}, 0},
		{"memory.size 3", []byte{0x3f, 0x03, 0x1a}, 0},
		{"select with types", []byte{0x1c, 0x01, 0x7f}, 0},
		{"ref.null and ref.func 3", []byte{0xd0, 0x70, 0x1a, 0xd2, 0x03, 0x1a}, 0},
		{"table.get 3", []byte{0x25, 0x03}, 0},
		{"i32.trunc_sat_f64_u (0xfc 3)", []byte{0xfc, 0x03}, 0},
		{"memory.init 3 3", []byte{0xfc, 0x08, 0x03, 0x03}, 0},
		{"table.copy 3 3", []byte{0xfc, 0x0e, 0x03, 0x03}, 0},
		{"table.fill 3", []byte{0xfc, 0x11, 0x03}, 0},
		{"v128.load16x4_s (0xfd 3)", []byte{0xfd, 0x03, 0x03, 0x03}, 0},
		{"v128.const", cat([]byte{0xfd, 0x0c}, bytes.Repeat([]byte{0x03}, 16)), 0},
		{"i8x16.shuffle", cat([]byte{0xfd, 0x0d}, bytes.Repeat([]byte{0x03}, 16)), 0},
		{"i8x16.extract_lane_s 3", []byte{0xfd, 0x15, 0x03}, 0},
		{"v128.load8_lane", []byte{0xfd, 0x54, 0x03, 0x03, 0x03}, 0},
		{"v128.load64_zero", []byte{0xfd, 0x5d, 0x03, 0x03}, 0},
		{"i32x4.dot_i16x8_s (2-byte sub-opcode)", []byte{0xfd, 0xba, 0x01}, 0},
		{"sign extension", []byte{0xc0, 0xc4}, 0},
		{"if/else", []byte{0x04, 0x40, 0x03, 0x40, 0x0b, 0x05, 0x03, 0x40, 0x0b, 0x0b}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := wasmModule(typeSec, oneFuncSec, memSec, sec(secCode, vec(fn(append(bytes.Clone(tt.body), 0x0b)...))))
			res := mustInstrument(t, in)
			if want := 1 + tt.loops; res.Checks != want {
				t.Errorf("Checks = %d, want %d", res.Checks, want)
			}
		})
	}
}

// TestExitDetection feeds bodies whose immediates contain 0x0f, 0x12 and
// 0x13 (return, return_call, return_call_indirect) and checks which the
// walk takes for instructions, and at what nesting depth each return is.
func TestExitDetection(t *testing.T) {
	tests := []struct {
		name    string
		body    []byte
		returns []uint32 // nesting depth of each return
		tails   int
	}{
		{"i32.const 15", []byte{0x41, 0x0f, 0x1a}, nil, 0},
		{"i64.const of 0x0f and 0x12 bytes", []byte{0x42, 0x8f, 0x92, 0x93, 0x00, 0x1a}, nil, 0},
		{"f32.const", []byte{0x43, 0x0f, 0x12, 0x13, 0x0f, 0x1a}, nil, 0},
		{"local.get 15, call 18, br 19", []byte{0x20, 0x0f, 0x1a, 0x10, 0x12, 0x0c, 0x13}, nil, 0},
		{"call_indirect type 18 table 19", []byte{0x41, 0x00, 0x11, 0x12, 0x13}, nil, 0},
		{"return", []byte{0x0f}, []uint32{0}, 0},
		{"returns in nested blocks", []byte{0x02, 0x40, 0x03, 0x40, 0x0f, 0x0b, 0x0f, 0x0b, 0x0f}, []uint32{2, 1, 0}, 0},
		{"return in if and else", []byte{0x41, 0x00, 0x04, 0x40, 0x0f, 0x05, 0x0f, 0x0b}, []uint32{1, 1}, 0},
		{"block type index 15", []byte{0x02, 0x0f, 0x0f, 0x0b}, []uint32{1}, 0},
		{"return_call 15", []byte{0x12, 0x0f}, nil, 1},
		{"return_call_indirect 15 15", []byte{0x13, 0x0f, 0x0f}, nil, 1},
		{"br_table of 15s", []byte{0x41, 0x00, 0x0e, 0x02, 0x0f, 0x0f, 0x0f}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := wasmModule(typeSec, oneFuncSec, memSec, sec(secCode, vec(fn(append(bytes.Clone(tt.body), 0x0b)...))))
			m, err := scan(in, false)
			if err != nil {
				t.Fatal(err)
			}
			var returns []uint32
			tails := 0
			for _, e := range m.edits {
				switch e.kind {
				case editReturn:
					returns = append(returns, e.depth)
				case editTailCall:
					tails++
				}
			}
			if !slices.Equal(returns, tt.returns) || tails != tt.tails {
				t.Errorf("returns at depths %v and %d tail calls, want %v and %d", returns, tails, tt.returns, tt.tails)
			}
			mustInstrument(t, in)
		})
	}
}

func TestErrors(t *testing.T) {
	withBody := func(instrs ...byte) []byte {
		return wasmModule(typeSec, oneFuncSec, sec(secCode, vec(fn(instrs...))))
	}
	// The offset of the first occurrence of b after the header.
	offsetOf := func(m []byte, b ...byte) int { return 8 + bytes.Index(m[8:], b) }

	unknownOp := withBody(0x41, 0x01, 0xfe, 0x00, 0x0b)
	importedFunc := wasmModule(
		typeSec,
		sec(secImport, vec(cat(str("env"), str("f"), []byte{kindFunc, 0x00}))),
		sec(secFunction, vec([]byte{0x00}, []byte{0x00})),
		sec(secCode, vec(fn(0x0b), fn(0x06, 0x40, 0x0b, 0x0b))),
	)
	tests := []struct {
		name string
		in   []byte
		want string // the whole message, or a part of it
	}{
		{"empty", nil, "wasmguard: not a WebAssembly module: shorter than the 8-byte header"},
		{"text", []byte("(module (func))"), `wasmguard: not a WebAssembly module: magic "(mod"`},
		{"short header", wasmHeader[:7], "shorter than the 8-byte header"},
		{"version 2", []byte{0x00, 'a', 's', 'm', 0x02, 0x00, 0x00, 0x00}, "unsupported WebAssembly binary version 02 00 00 00"},
		{"component", []byte{0x00, 'a', 's', 'm', 0x0d, 0x00, 0x01, 0x00}, "unsupported WebAssembly binary version"},
		{
			"unknown opcode", unknownOp,
			fmt.Sprintf("wasmguard: code section: function 0: unknown opcode 0xfe at offset %#x", offsetOf(unknownOp, 0xfe)),
		},
		{
			"exception handling, function index counts imports", importedFunc,
			fmt.Sprintf("wasmguard: code section: function 2: unsupported exception-handling opcode 0x06 (try) at offset %#x", offsetOf(importedFunc, 0x06, 0x40)),
		},
		{"try_table", withBody(0x1f, 0x40, 0x00, 0x0b, 0x0b), "unsupported exception-handling opcode 0x1f (try_table)"},
		{"call_ref", withBody(0x14, 0x00, 0x0b), "function 0: unknown opcode 0x14"},
		{"unknown 0xfc", withBody(0xfc, 0x12, 0x0b), "function 0: unknown opcode 0xfc 0x12"},
		{"unassigned SIMD", withBody(0xfd, 0x9a, 0x01, 0x0b), "function 0: unknown opcode 0xfd 0x9a"},
		{"relaxed SIMD", withBody(0xfd, 0x80, 0x02, 0x0b), "function 0: unknown opcode 0xfd 0x100"},
		{"atomics", withBody(0xfe, 0x03, 0x00, 0x0b), "unknown opcode 0xfe"},
		{"bad block type", withBody(0x02, 0x64, 0x0b, 0x0b), "invalid block type 0x64"},
		{"bad select type", withBody(0x1c, 0x01, 0x64, 0x0b), "invalid value type 0x64"},
		{"bad ref.null type", withBody(0xd0, 0x7f, 0x1a, 0x0b), "invalid reference type 0x7f"},
		{"bad local type", wasmModule(typeSec, oneFuncSec, sec(secCode, vec(sized([]byte{0x01, 0x01, 0x40, 0x0b})))), "local declaration 0: invalid value type 0x40"},
		{"body missing final end", withBody(0x02, 0x40, 0x0b), "function body ends without its final end"},
		{"code after final end", withBody(0x0b, 0x01, 0x0b), "2 bytes after the function's final end"},
		{"loop without block type", withBody(0x03), "code section: function 0: unexpected end of function body"},
		{"immediate past body end", withBody(0x44, 0x00, 0x00), "unexpected end of function body"},
		{"body larger than section", wasmModule(typeSec, oneFuncSec, sec(secCode, leb(1), leb(9), []byte{0x00, 0x0b})), "function body of 9 bytes runs past the end of the code section"},
		{"br_table count too large", withBody(0x0e, 0xff, 0xff, 0x03, 0x0b), "br_table label count 65535 exceeds"},
		{"i32.const too long", withBody(0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, 0x0b), "LEB128 integer longer than 5 bytes"},
		{"i32.const overflow", withBody(0x41, 0x80, 0x80, 0x80, 0x80, 0x10, 0x1a, 0x0b), "LEB128 integer overflows 32 bits"},
		{"i64.const overflow", withBody(0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x1a, 0x0b), "LEB128 integer overflows 64 bits"},
		{"negative block type index", withBody(0x02, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x0b, 0x0b), "invalid block type"},
		{"section size too long", cat(wasmHeader, []byte{secType, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), "type section header: LEB128 integer longer than 5 bytes at offset 0x9"},
		{"section size overflow", cat(wasmHeader, []byte{secType, 0xff, 0xff, 0xff, 0xff, 0x1f}), "type section header: LEB128 integer overflows 32 bits at offset 0x9"},
		{"section past end", cat(wasmHeader, []byte{secType, 0x05, 0x01}), "type section of 5 bytes runs past the end of the module (1 bytes left) at offset 0xa"},
		{"section size missing", cat(wasmHeader, []byte{secType}), "type section header: unexpected end of module at offset 0x9"},
		{"unknown section", cat(wasmHeader, []byte{14, 0x00}), "unknown section id 14 at offset 0x8"},
		{"duplicate section", wasmModule(typeSec, typeSec), "type section is duplicated or out of order at offset 0xe"},
		{"out of order", wasmModule(oneFuncSec, typeSec), "type section is duplicated or out of order"},
		{"tag after global", wasmModule(sec(secGlobal, vec()), sec(secTag, vec())), "tag section is duplicated or out of order"},
		{"export count too large", wasmModule(sec(secExport, leb(1000), str("x"))), "export section: export count 1000 exceeds the 2 bytes left in the export section at offset 0xa"},
		{"import kind", wasmModule(sec(secImport, vec(cat(str("a"), str("b"), []byte{0x07})))), "import section: import 0: unknown import kind 0x07"},
		{"function without code", wasmModule(typeSec, oneFuncSec), "function section declares 1 functions but the code section has 0 bodies"},
		{"code without function", wasmModule(typeSec, sec(secCode, vec(fn(0x0b)))), "function section declares 0 functions but the code section has 1 bodies"},
		{"data count mismatch", wasmModule(sec(secDataCount, leb(2))), "data count section declares 2 segments but the data section has 0"},
		{"start trailing bytes", wasmModule(typeSec, oneFuncSec, sec(secStart, leb(0), leb(0)), sec(secCode, vec(fn(0x0b)))), "start section: 1 unexpected trailing bytes"},
		{"custom section without name", wasmModule(sec(secCustom)), "custom section: unexpected end of custom section"},
		{"custom name too long", wasmModule(sec(secCustom, leb(5), []byte("ab"))), "name of 5 bytes runs past the end of the custom section"},
		{
			"interrupt already exported",
			wasmModule(sec(secGlobal, vec(interruptGlobal)), sec(secExport, vec(cat(str(InterruptExport), []byte{kindGlobal, 0x00})))),
			`export section: export 0: the module already exports "lineage.interrupt", a name reserved for the host`,
		},
		{
			"countdown already exported",
			wasmModule(sec(secGlobal, vec(interruptGlobal)), sec(secExport, vec(cat(str(CountdownExport), []byte{kindGlobal, 0x00})))),
			`export 0: the module already exports "lineage.countdown"`,
		},
		{
			"depth already exported",
			wasmModule(typeSec, oneFuncSec, memSec, sec(secExport, vec(cat(str(DepthExport), []byte{kindFunc, 0x00}))), sec(secCode, vec(fn(0x0b)))),
			`export 0: the module already exports "lineage.depth"`,
		},
		{
			"no memory",
			wasmModule(typeSec, oneFuncSec, sec(secCode, vec(fn(0x0b)))),
			"wasmguard: the module has no memory: the instrumentation's exits to Go execute memory.grow on memory 0, so the module must define or import one",
		},
		{
			"64-bit memory",
			wasmModule(typeSec, oneFuncSec, sec(secMemory, vec([]byte{0x04, 0x01})), sec(secCode, vec(fn(0x0b)))),
			"wasmguard: memory 0 is a 64-bit memory (memory64), which is not supported",
		},
		{
			"64-bit imported memory",
			wasmModule(typeSec, sec(secImport, vec(cat(str("e"), str("m"), []byte{kindMemory, 0x05, 0x01, 0x02}))), oneFuncSec, sec(secCode, vec(fn(0x0b)))),
			"memory 0 is a 64-bit memory",
		},
		{"bad memory limits", wasmModule(sec(secMemory, vec([]byte{0x08, 0x01}))), "memory section: memory 0: invalid limits flags 0x08"},
		{"memory trailing bytes", wasmModule(sec(secMemory, vec([]byte{0x00, 0x01}), []byte{0x00})), "memory section: 1 unexpected trailing bytes"},
		{"GC type", wasmModule(sec(secType, vec(voidType, []byte{0x5f, 0x00}))), "type section: type 1: unsupported type form 0x5f, want 0x60 (a function type) at offset 0xe"},
		{"bad result type", wasmModule(sec(secType, vec([]byte{0x60, 0x00, 0x01, 0x64}))), "type section: type 0: result 0: invalid value type 0x64"},
		{"bad parameter type", wasmModule(sec(secType, vec([]byte{0x60, 0x01, 0x40, 0x00}))), "type section: type 0: parameter 0: invalid value type 0x40"},
		{"type trailing bytes", wasmModule(sec(secType, vec(voidType), []byte{0x60})), "type section: 1 unexpected trailing bytes"},
		{"function trailing bytes", wasmModule(typeSec, sec(secFunction, vec([]byte{0x00}), []byte{0x00})), "function section: 1 unexpected trailing bytes"},
		{
			"type index out of range",
			wasmModule(typeSec, sec(secImport, vec(cat(str("env"), str("f"), []byte{kindFunc, 0x00}))), sec(secFunction, vec([]byte{0x03})), memSec, sec(secCode, vec(fn(0x0b)))),
			"code section: function 1: type index 3 out of range: the module has 1 types",
		},
		{
			"start already exported, even without a start section",
			wasmModule(typeSec, oneFuncSec, sec(secExport, vec(
				cat(str("a"), []byte{kindFunc, 0x00}),
				cat(str(StartExport), []byte{kindFunc, 0x00}),
			)), sec(secCode, vec(fn(0x0b)))),
			`export 1: the module already exports "lineage.start"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Instrument(tt.in)
			if err == nil {
				t.Fatalf("no error; output % x", res.Wasm)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			if res.Wasm != nil {
				t.Error("output returned along with an error")
			}
		})
	}
}

package wasmguard

import (
	"bytes"
	"fmt"
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

// check is the interrupt check for global idx.
func check(idx uint32) []byte { return cat([]byte{0x23}, leb(idx), []byte{0x04, 0x40, 0x00, 0x0b}) }

var (
	voidType   = []byte{0x60, 0x00, 0x00} // (func)
	typeSec    = sec(secType, vec(voidType))
	oneFuncSec = sec(secFunction, vec([]byte{0x00}))
)

// smallModule is (module (func (export "f") (loop (br 0)))), by hand.
func smallModule() []byte {
	return wasmModule(
		typeSec,
		oneFuncSec,
		sec(secExport, vec(cat(str("f"), []byte{kindFunc, 0x00}))),
		sec(secCode, vec(fn(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b))),
	)
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
				sec(secGlobal, vec(interruptGlobal)),
				sec(secExport, vec(
					cat(str("f"), []byte{kindFunc, 0x00}),
					cat(str(InterruptExport), []byte{kindGlobal, 0x00}),
				)),
				sec(secCode, vec(sized(cat(
					[]byte{0x00},
					check(0),
					[]byte{0x03, 0x40},
					check(0),
					[]byte{0x0c, 0x00, 0x0b, 0x0b},
				)))),
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
				)),
				oneFuncSec,
				sec(secGlobal, vec(
					[]byte{0x7e, 0x00, 0x42, 0x03, 0x0b},
					interruptGlobal,
				)),
				sec(secExport, vec(
					cat(str("x"), []byte{kindGlobal, 0x01}),
					// One imported and one defined global before it.
					cat(str(InterruptExport), []byte{kindGlobal, 0x02}),
					cat(str(StartExport), []byte{kindFunc, 0x01}),
				)),
				sec(secCode, vec(sized(cat([]byte{0x00}, check(2), []byte{0x0b})))),
			),
			checks:   1,
			hadStart: true,
		},
		{
			name: "locals kept before the entry check",
			in: wasmModule(typeSec, oneFuncSec, sec(secCode, vec(sized([]byte{
				0x02, 0x01, 0x7f, 0x03, 0x7e, // locals: 1 i32, 3 i64
				0x0b,
			})))),
			want: wasmModule(
				typeSec,
				oneFuncSec,
				sec(secGlobal, vec(interruptGlobal)),
				sec(secExport, vec(cat(str(InterruptExport), []byte{kindGlobal, 0x00}))),
				sec(secCode, vec(sized(cat(
					[]byte{0x02, 0x01, 0x7f, 0x03, 0x7e},
					check(0),
					[]byte{0x0b},
				)))),
			),
			checks: 1,
		},
		{
			name: "empty module",
			in:   wasmModule(),
			want: wasmModule(
				sec(secGlobal, vec(interruptGlobal)),
				sec(secExport, vec(cat(str(InterruptExport), []byte{kindGlobal, 0x00}))),
			),
		},
		{
			// 200 imported globals put the new one at index 200, whose
			// LEB128 encoding takes two bytes, so every check grows.
			name: "two-byte global index",
			in: wasmModule(
				typeSec,
				sec(secImport, vec(repeat(200, cat(str("m"), str("g"), []byte{kindGlobal, 0x7f, 0x00}))...)),
				oneFuncSec,
				sec(secCode, vec(fn(0x03, 0x40, 0x0b, 0x0b))),
			),
			want: wasmModule(
				typeSec,
				sec(secImport, vec(repeat(200, cat(str("m"), str("g"), []byte{kindGlobal, 0x7f, 0x00}))...)),
				oneFuncSec,
				sec(secGlobal, vec(interruptGlobal)),
				sec(secExport, vec(cat(str(InterruptExport), []byte{kindGlobal, 0xc8, 0x01}))),
				sec(secCode, vec(sized(cat(
					[]byte{0x00}, check(200), []byte{0x03, 0x40}, check(200), []byte{0x0b, 0x0b},
				)))),
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
	tests := []struct {
		name string
		in   []byte
		want []string // section ids, or custom sections' bytes
	}{
		{
			name: "after function, before a custom section that precedes code",
			in:   wasmModule(a, typeSec, b, oneFuncSec, c, sec(secCode, vec(fn(0x0b))), d),
			want: []string{"a", "type", "b", "function", "global", "export", "c", "code", "d"},
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
			in:   wasmModule(typeSec, oneFuncSec, sec(secGlobal, vec()), a, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "function", "global", "export", "a", "code"},
		},
		{
			name: "global created before an existing export section",
			in:   wasmModule(typeSec, oneFuncSec, a, sec(secExport, vec()), b, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "function", "global", "a", "export", "b", "code"},
		},
		{
			name: "start section dropped",
			in:   wasmModule(typeSec, oneFuncSec, sec(secStart, leb(0)), a, sec(secCode, vec(fn(0x0b)))),
			want: []string{"type", "function", "global", "export", "a", "code"},
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
			in := wasmModule(typeSec, oneFuncSec, sec(secCode, vec(fn(append(bytes.Clone(tt.body), 0x0b)...))))
			res := mustInstrument(t, in)
			if want := 1 + tt.loops; res.Checks != want {
				t.Errorf("Checks = %d, want %d", res.Checks, want)
			}
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

// Package wasmguard rewrites a WebAssembly module so that the host can
// interrupt a guest call that runs past its deadline.
//
// wazero can abandon a guest call when its context is done
// (RuntimeConfig.WithCloseOnContextDone), but it does so by calling back
// into Go at every loop header and starting a goroutine per call, which
// costs several times more than a whole call into one of our plugins.
// Instead, Instrument gives the module a mutable i32 global, exported as
// InterruptExport, and makes the guest test it on entry to every function
// and at the top of every loop iteration. Any computation that runs for long
// must either loop or call (time spent in host functions is the host's own
// business), so once the host sets the global to a non-zero value
// (api.MutableGlobal.Set, from any goroutine) the guest traps with
// `unreachable` soon after. A check is a global load and a branch, so an
// uninterrupted call pays next to nothing for it.
//
// A start function runs while the module is being instantiated, before the
// host can reach the module's global, so Instrument also removes the start
// section and exports the start function as StartExport instead: the host
// instantiates without running guest code, then calls StartExport itself
// under a deadline.
//
// The global stays set after a trap. An instance that was interrupted may be
// in any state (a Go guest, say, may have stopped while holding a runtime
// lock), so the host should discard it rather than reset the global and go
// on.
//
// Caveat: a check only fires once the host has set the global, and the host
// may not get to. wazero's native code cannot be preempted by the Go
// scheduler, so anything in the Go runtime that must wait for every P to
// reach a safe point waits for the guest to return. A garbage collection's
// stop-the-world phase, once begun, stops every other goroutine, including
// the one that would set the global, and an infinite loop then hangs the
// whole process for good. (wazero's RATIONALE.md, "Why context cancellation
// is handled in Go code rather than native code", describes the same
// problem.) The host must keep that from happening, for instance by having
// the guest leave native code now and then; the checks alone do not.
//
// Instrument walks every instruction, so that a 0x03 byte inside an
// immediate is never mistaken for a loop, but it does not validate the
// module: wazero does that when it compiles the result. What it cannot walk
// with certainty (an unknown opcode, the exception-handling proposal, a
// malformed encoding) it rejects with an error that names the section, the
// function and the byte offset in the input.
//
// The package imports only the standard library, so the rewriter does not
// depend on the runtime version and can be fuzzed on its own.
package wasmguard

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// InterruptExport is the name under which the instrumented module exports
// its interrupt global: a mutable i32, zero until the host sets it.
const InterruptExport = "lineage.interrupt"

// StartExport is the name under which the instrumented module exports the
// function its start section named, if it had one.
const StartExport = "lineage.start"

// Result is an instrumented module.
type Result struct {
	Wasm     []byte // the rewritten module
	HadStart bool   // a start section was moved to the StartExport export
	Checks   int    // number of interrupt checks inserted (function entries + loops)
}

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

var sectionNames = [...]string{
	secCustom:    "custom",
	secType:      "type",
	secImport:    "import",
	secFunction:  "function",
	secTable:     "table",
	secMemory:    "memory",
	secGlobal:    "global",
	secExport:    "export",
	secStart:     "start",
	secElement:   "element",
	secCode:      "code",
	secData:      "data",
	secDataCount: "data count",
	secTag:       "tag",
}

// sectionRank is the position a non-custom section must take in a module.
// Ids are not in order: data count (12) sits before code (10), and tag (13)
// between memory and global.
var sectionRank = [...]int{
	secType:      1,
	secImport:    2,
	secFunction:  3,
	secTable:     4,
	secMemory:    5,
	secTag:       6,
	secGlobal:    7,
	secExport:    8,
	secStart:     9,
	secElement:   10,
	secDataCount: 11,
	secCode:      12,
	secData:      13,
}

// Export and import kinds.
const (
	kindFunc   = 0x00
	kindTable  = 0x01
	kindMemory = 0x02
	kindGlobal = 0x03
	kindTag    = 0x04
)

// interruptGlobal is the appended global's definition:
// (global (mut i32) (i32.const 0)).
var interruptGlobal = []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type section struct {
	id    byte
	start int // offset of the id byte
	body  int // offset of the contents, past the size
	end   int
}

func (s section) name() string { return sectionNames[s.id] + " section" }

// body is a function body to be copied with checks added.
type body struct {
	start int // first byte of the body's contents (the local declarations)
	instr int // first instruction, where the entry check goes
	end   int
	loops int // how many of module.loops belong to this body
}

// module is what Instrument learns about its input before writing anything.
type module struct {
	in       []byte
	sections []section

	importedFuncs   uint32
	importedGlobals uint32
	definedFuncs    uint32 // function section count
	definedGlobals  uint32 // global section count
	dataCount       int64  // data count section's count, or -1 without one
	dataSegments    uint32
	startFunc       uint32
	hasStart        bool

	global, export, code int    // index into sections, or -1 if absent
	exportCount          uint32 // entries in the export section

	bodies []body
	loops  []int // offsets where loop checks go, for all bodies in order
}

// Instrument returns a copy of wasm, a binary WebAssembly module, rewritten
// as the package documentation describes. It never modifies wasm.
func Instrument(wasm []byte) (Result, error) {
	m, err := scan(wasm)
	if err != nil {
		return Result{}, fmt.Errorf("wasmguard: %w", err)
	}
	out, err := m.emit()
	if err != nil {
		return Result{}, fmt.Errorf("wasmguard: %w", err)
	}
	return Result{Wasm: out, HadStart: m.hasStart, Checks: len(m.bodies) + len(m.loops)}, nil
}

// scan splits the module into sections and decodes what the rewrite
// depends on, so that emit cannot fail halfway on malformed input.
func scan(in []byte) (*module, error) {
	if len(in) < len(wasmHeader) {
		return nil, errors.New("not a WebAssembly module: shorter than the 8-byte header")
	}
	if !bytes.Equal(in[:4], wasmHeader[:4]) {
		return nil, fmt.Errorf("not a WebAssembly module: magic %q, want %q", in[:4], wasmHeader[:4])
	}
	if !bytes.Equal(in[4:8], wasmHeader[4:]) {
		return nil, fmt.Errorf("unsupported WebAssembly binary version % x, want 01 00 00 00", in[4:8])
	}

	m := &module{in: in, dataCount: -1, global: -1, export: -1, code: -1}
	r := reader{buf: in, pos: len(wasmHeader), end: len(in), what: "module"}
	lastRank := 0
	for r.pos < r.end {
		start := r.pos
		id := in[r.pos]
		r.pos++
		if int(id) >= len(sectionNames) {
			return nil, r.errorf(start, "unknown section id %d", id)
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("%s section header: %w", sectionNames[id], err)
		}
		sr, err := r.sub(size, sectionNames[id]+" section")
		if err != nil {
			return nil, err
		}
		s := section{id: id, start: start, body: sr.pos, end: sr.end}
		if id != secCustom {
			if rank := sectionRank[id]; rank > lastRank {
				lastRank = rank
			} else {
				return nil, r.errorf(start, "%s is duplicated or out of order", s.name())
			}
		}
		if err := m.scanSection(s, &sr); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name(), err)
		}
		m.sections = append(m.sections, s)
	}

	if len(m.bodies) != int(m.definedFuncs) {
		return nil, fmt.Errorf("function section declares %d functions but the code section has %d bodies", m.definedFuncs, len(m.bodies))
	}
	if m.dataCount >= 0 && m.dataCount != int64(m.dataSegments) {
		return nil, fmt.Errorf("data count section declares %d segments but the data section has %d", m.dataCount, m.dataSegments)
	}
	return m, nil
}

func (m *module) scanSection(s section, r *reader) error {
	var err error
	switch s.id {
	case secCustom:
		// Copied as is; only check that it has the name it must start with.
		_, err = r.name()
	case secImport:
		err = m.scanImports(r)
	case secFunction:
		m.definedFuncs, err = r.count("function")
	case secGlobal:
		m.global = len(m.sections)
		m.definedGlobals, err = r.count("global")
	case secExport:
		m.export = len(m.sections)
		err = m.scanExports(r)
	case secStart:
		if m.startFunc, err = r.u32(); err == nil {
			m.hasStart = true
			err = r.expectEnd()
		}
	case secDataCount:
		var n uint32
		if n, err = r.u32(); err == nil {
			m.dataCount = int64(n)
			err = r.expectEnd()
		}
	case secData:
		m.dataSegments, err = r.count("data segment")
	case secCode:
		m.code = len(m.sections)
		err = m.scanCode(r)
	}
	return err
}

// scanImports counts the imported functions and globals, which come first
// in their index spaces: the new global's index is after all globals, and
// errors name functions by their index.
func (m *module) scanImports(r *reader) error {
	n, err := r.count("import")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := m.scanImport(r); err != nil {
			return fmt.Errorf("import %d: %w", i, err)
		}
	}
	return r.expectEnd()
}

func (m *module) scanImport(r *reader) error {
	if _, err := r.name(); err != nil { // module
		return err
	}
	if _, err := r.name(); err != nil { // field
		return err
	}
	kind, err := r.byte()
	if err != nil {
		return err
	}
	switch kind {
	case kindFunc:
		m.importedFuncs++
		return r.skipU32() // type index
	case kindTable:
		t, err := r.byte()
		if err != nil {
			return err
		}
		if !isRefType(t) {
			return r.errorf(r.pos-1, "invalid reference type %#02x", t)
		}
		return r.skipLimits()
	case kindMemory:
		return r.skipLimits()
	case kindGlobal:
		m.importedGlobals++
		if err := r.valType(); err != nil {
			return err
		}
		mut, err := r.byte()
		if err != nil {
			return err
		}
		if mut > 1 {
			return r.errorf(r.pos-1, "invalid global mutability %#02x", mut)
		}
		return nil
	case kindTag:
		if err := r.skip(1); err != nil { // attribute
			return err
		}
		return r.skipU32() // type index
	}
	return r.errorf(r.pos-1, "unknown import kind %#02x", kind)
}

// skipLimits skips the limits of a table or memory type. Bit 0 of the flags
// says a maximum follows, bit 1 marks a shared memory (threads) and bit 2 a
// 64-bit one (memory64), whose bounds are u64.
func (r *reader) skipLimits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags > 0x07 {
		return r.errorf(r.pos-1, "invalid limits flags %#02x", flags)
	}
	n := 1
	if flags&0x01 != 0 {
		n = 2
	}
	for ; n > 0; n-- {
		var err error
		if flags&0x04 != 0 {
			_, err = r.unsigned64()
		} else {
			_, err = r.u32()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unsigned64 reads an unsigned LEB128 integer of up to 64 bits.
func (r *reader) unsigned64() (uint64, error) {
	start := r.pos
	var v uint64
	for shift := 0; ; shift += 7 {
		if r.pos >= r.end {
			return 0, r.eof()
		}
		b := r.buf[r.pos]
		r.pos++
		if shift == 63 && b > 0x01 {
			return 0, r.errorf(start, "LEB128 integer overflows 64 bits")
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
}

// scanExports checks that the names the host relies on are not taken: if
// the guest could export its own "lineage.interrupt", the host would set a
// global that nothing reads.
func (m *module) scanExports(r *reader) error {
	n, err := r.count("export")
	if err != nil {
		return err
	}
	m.exportCount = n
	for i := uint32(0); i < n; i++ {
		start := r.pos
		name, err := r.name()
		if err == nil {
			if s := string(name); s == InterruptExport || s == StartExport {
				return r.errorf(start, "export %d: the module already exports %q, a name reserved for the host", i, s)
			}
			if _, err = r.byte(); err == nil { // kind
				err = r.skipU32() // index
			}
		}
		if err != nil {
			return fmt.Errorf("export %d: %w", i, err)
		}
	}
	return r.expectEnd()
}

// scanCode walks every function body and records where checks go.
func (m *module) scanCode(r *reader) error {
	n, err := r.count("function body")
	if err != nil {
		return err
	}
	m.bodies = make([]body, 0, n)
	for i := uint32(0); i < n; i++ {
		fn := uint64(m.importedFuncs) + uint64(i) // index in the function index space
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		br, err := r.sub(size, "function body")
		if err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		b := body{start: br.pos, end: br.end}
		if err := br.skipLocals(); err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		b.instr = br.pos
		before := len(m.loops)
		if m.loops, err = walkBody(&br, m.loops); err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		b.loops = len(m.loops) - before
		m.bodies = append(m.bodies, b)
	}
	return r.expectEnd()
}

// emit writes the instrumented module.
func (m *module) emit() ([]byte, error) {
	if uint64(m.importedGlobals)+uint64(m.definedGlobals) >= math.MaxUint32 {
		return nil, errors.New("global section: no global index left for the interrupt global")
	}
	globalIdx := m.importedGlobals + m.definedGlobals
	check := append(append([]byte{0x23}, appendU32(nil, globalIdx)...), 0x04, 0x40, 0x00, 0x0b)

	codeSize, err := m.codeSize(len(check))
	if err != nil {
		return nil, err
	}

	// New sections go right after the last section that must precede
	// them, so custom sections keep their place relative to the sections
	// around them.
	insertAt := func(rank int) int {
		at := 0
		for i, s := range m.sections {
			if s.id != secCustom && sectionRank[s.id] < rank {
				at = i + 1
			}
		}
		return at
	}
	globalAt, exportAt := -1, -1
	if m.global < 0 {
		globalAt = insertAt(sectionRank[secGlobal])
	}
	if m.export < 0 {
		exportAt = insertAt(sectionRank[secExport])
	}

	out := make([]byte, 0, len(m.in)+codeSize-m.codeSectionLen()+64)
	out = append(out, wasmHeader...)
	for i := 0; i <= len(m.sections); i++ {
		if i == globalAt {
			out = m.appendGlobalSection(out, section{id: secGlobal, start: -1})
		}
		if i == exportAt {
			out = m.appendExportSection(out, section{id: secExport, start: -1}, globalIdx)
		}
		if i == len(m.sections) {
			break
		}
		switch s := m.sections[i]; s.id {
		case secStart:
			// Dropped: the function is exported as StartExport instead.
		case secGlobal:
			out = m.appendGlobalSection(out, s)
		case secExport:
			out = m.appendExportSection(out, s, globalIdx)
		case secCode:
			out = m.appendCodeSection(out, codeSize, check)
		default:
			out = append(out, m.in[s.start:s.end]...)
		}
	}
	return out, nil
}

// rest returns the contents of s after its leading vector count, or nil for
// a section being created.
func (m *module) rest(s section) []byte {
	if s.start < 0 {
		return nil
	}
	return m.in[s.body+sizeOfU32At(m.in, s.body) : s.end]
}

// sizeOfU32At is the length of the LEB128 integer at in[off], which scan
// has already decoded.
func sizeOfU32At(in []byte, off int) int {
	n := 1
	for in[off+n-1]&0x80 != 0 {
		n++
	}
	return n
}

func appendSection(out []byte, id byte, contents ...[]byte) []byte {
	size := 0
	for _, c := range contents {
		size += len(c)
	}
	out = append(out, id)
	out = appendU32(out, uint32(size))
	for _, c := range contents {
		out = append(out, c...)
	}
	return out
}

func (m *module) appendGlobalSection(out []byte, s section) []byte {
	count := appendU32(nil, m.definedGlobals+1)
	return appendSection(out, secGlobal, count, m.rest(s), interruptGlobal)
}

func (m *module) appendExportSection(out []byte, s section, globalIdx uint32) []byte {
	count := m.exportCount // zero when the section is being created
	var added []byte
	added = appendExport(added, InterruptExport, kindGlobal, globalIdx)
	count++
	if m.hasStart {
		added = appendExport(added, StartExport, kindFunc, m.startFunc)
		count++
	}
	return appendSection(out, secExport, appendU32(nil, count), m.rest(s), added)
}

func appendExport(b []byte, name string, kind byte, idx uint32) []byte {
	b = appendU32(b, uint32(len(name)))
	b = append(b, name...)
	b = append(b, kind)
	return appendU32(b, idx)
}

// newSize is the size of b once its checks are in.
func (b body) newSize(checkLen int) int {
	return b.end - b.start + (1+b.loops)*checkLen
}

// codeSize is the size of the new code section's contents.
func (m *module) codeSize(checkLen int) (int, error) {
	size := sizeU32(uint32(len(m.bodies)))
	for i, b := range m.bodies {
		n := b.newSize(checkLen)
		if int64(n) > math.MaxUint32 {
			return 0, fmt.Errorf("code section: function %d: too large once instrumented", uint64(m.importedFuncs)+uint64(i))
		}
		size += sizeU32(uint32(n)) + n
	}
	if int64(size) > math.MaxUint32 {
		return 0, errors.New("code section: too large once instrumented")
	}
	return size, nil
}

// codeSectionLen is the size of the input's code section, header included.
func (m *module) codeSectionLen() int {
	if m.code < 0 {
		return 0
	}
	s := m.sections[m.code]
	return s.end - s.start
}

// appendCodeSection copies the function bodies with a check after the local
// declarations and one after each loop's block type. Everything between
// insertion points is copied as is, so branch depths, immediates and any
// non-minimal encodings are untouched.
func (m *module) appendCodeSection(out []byte, size int, check []byte) []byte {
	out = append(out, secCode)
	out = appendU32(out, uint32(size))
	out = appendU32(out, uint32(len(m.bodies)))
	loops := m.loops
	for _, b := range m.bodies {
		out = appendU32(out, uint32(b.newSize(len(check))))
		out = append(out, m.in[b.start:b.instr]...)
		out = append(out, check...)
		prev := b.instr
		for _, at := range loops[:b.loops] {
			out = append(out, m.in[prev:at]...)
			out = append(out, check...)
			prev = at
		}
		out = append(out, m.in[prev:b.end]...)
		loops = loops[b.loops:]
	}
	return out
}

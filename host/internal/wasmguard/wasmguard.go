// Package wasmguard rewrites a WebAssembly module so that the host can
// bound what a call into untrusted guest code costs it: time, through an
// interrupt flag that the host raises when the call's deadline passes, and
// host memory, through a limit on the guest's call depth. So that the flag
// can be raised at all, it also makes the guest leave compiled code for Go
// now and then.
//
// # Interrupt
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
// The global stays set after a trap. An instance that was interrupted may be
// in any state (a Go guest, say, may have stopped while holding a runtime
// lock), so the host must discard it rather than reset the global and go
// on.
//
// # Safe points
//
// wazero's compiled code is not Go code: the Go scheduler cannot preempt
// it, and it never reaches a Go safe point of its own accord. Anything in
// the Go runtime that must wait for every goroutine to reach one waits for
// the guest instead. A garbage collection's stop-the-world phase, once
// begun, stops every other goroutine, including the timer that would set
// the interrupt, so a guest that loops forever would hang the whole process
// for good; and with GOMAXPROCS=1 a spinning guest would keep the timer
// from ever running. (wazero's RATIONALE.md, "Why context cancellation is
// handled in Go code rather than native code", describes the problem.)
//
// So every check also decrements a second mutable i32 global (exported as
// CountdownExport, for tests and diagnostics; the host need not touch it),
// and the check that takes it to zero resets it to Countdown and executes
// `i32.const 0; memory.grow 0; drop`. wazero's compiler always leaves
// native code to grow memory: the engine's Go code does it and then
// resumes the guest. That Go code is an ordinary preemption point, where a
// pending stop-the-world or the scheduler's request to yield takes effect,
// and growing by zero pages changes nothing. Every Countdown checks, then,
// the guest gives the Go runtime a chance to stop it: every few
// microseconds in an empty loop, every few tens of microseconds in Go code
// (see Countdown). The rewrite needs memory 0 for this, defined or
// imported; Instrument rejects a module that defines functions but has no
// memory (plugins always have one).
//
// # Call depth
//
// wazero runs a guest on a native stack that it allocates on the Go heap
// and doubles whenever it runs out, up to a ceiling of 400 MB, before it
// traps with a stack overflow: a guest that recurses without end makes the
// host allocate hundreds of megabytes before it stops. Instrument gives the
// module a third mutable i32 global, exported as DepthExport, that counts
// the guest's frames. Every function increments it on entry and traps with
// `unreachable` if that takes it past MaxDepth, and decrements it on every
// way out that goes on running the guest:
//
//   - The function body is wrapped in a block of the function's result
//     type (for several results, a type index; Instrument appends a
//     `[] -> [results]` function type to the type section if there is
//     none, which shifts no index). The wrapper sits directly inside the
//     function's own label, so the body's final end and every branch that
//     targeted the function's label (br, br_if, br_table) now leave the
//     wrapper instead, with the same relative depths. The decrement follows
//     the wrapper's end.
//   - Every return becomes a br to the wrapper, at its nesting depth.
//   - A tail call (return_call, return_call_indirect) decrements before it
//     leaves; the callee increments again, so a loop of tail calls never
//     reaches the limit.
//
// A trap leaves the count where it was, which does not matter because the
// host discards any instance that trapped; after every call that returns
// the count is back to zero, so the host need not reset it (it can, through
// the export). Calls that reenter the guest from a host function count
// like any other.
//
// # Start function
//
// A start function runs while the module is being instantiated, before the
// host can reach the module's global, so Instrument also removes the start
// section and exports the start function as StartExport instead: the host
// instantiates without running guest code, then calls StartExport itself
// under a deadline. It is instrumented like any other function, as is a
// WASI reactor's _initialize.
//
// # Limits
//
//   - Checks sit at function entries and loop headers only. Between two, a
//     guest runs straight-line code, bounded by the size of a function, but
//     a single instruction may take long: memory.fill or memory.copy over
//     a GiB, or a call into a host function. Such an instruction delays both
//     the interrupt and the next exit to Go (and so a garbage collection)
//     by as long as it takes.
//   - The depth is counted in frames, not bytes. A frame's native size
//     depends on the function (its locals, the values live across a call),
//     so MaxDepth frames of a function with thousands of locals can still
//     take much stack; wazero's own ceiling applies then.
//   - A guest that legitimately recurses deeper than MaxDepth traps, Go
//     guests included; see MaxDepth.
//   - The checks are cheap but not free: about half a nanosecond each,
//     mostly for the load and store of the countdown (the interrupt check
//     alone costs a fraction of that). A Go loop that neither calls nor
//     allocates runs some 20% slower, and a call into a small exported Go
//     function costs about 10ns more (see BenchmarkGoCall and
//     BenchmarkLoop).
//   - The instrumented module exports the names InterruptExport,
//     CountdownExport, DepthExport and StartExport; a module that already
//     exports one of them is rejected.
//
// # Decoding
//
// Instrument walks every instruction, so that a 0x03 or 0x0f byte inside an
// immediate is never mistaken for a loop or a return, but it does not
// validate the module: wazero does that when it compiles the result. What
// it cannot walk with certainty (an unknown opcode, the exception-handling
// proposal, a malformed encoding, a type that is not a function type) it
// rejects with an error that names the section, the function and the byte
// offset in the input.
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

// Names under which the instrumented module exports what the host needs.
const (
	// InterruptExport names the interrupt global: a mutable i32, zero
	// until the host sets it.
	InterruptExport = "lineage.interrupt"
	// CountdownExport names the countdown global: a mutable i32 that
	// every check decrements, from Countdown down to zero, where the guest
	// exits to Go and it starts again.
	CountdownExport = "lineage.countdown"
	// DepthExport names the depth global: a mutable i32 holding the
	// number of guest frames on the stack, zero between calls.
	DepthExport = "lineage.depth"
	// StartExport names the function that the start section named, if
	// there was one.
	StartExport = "lineage.start"
)

const (
	// Countdown is the number of checks (function entries and loop
	// iterations) between two exits to Go. An exit costs about 40ns, the
	// time of a few dozen checks, so at 4096 exits add nothing measurable
	// even to an empty loop. Measured between exits (TestSafePointInterval,
	// on a busy 2-CPU machine): an empty loop runs for 6 to 9µs, Go code
	// for 10 to 40µs, within the 100µs or so that a garbage collection
	// should have to wait for the guest.
	Countdown = 4096

	// MaxDepth is the deepest the guest's call stack may grow, in frames.
	// A function entered with MaxDepth frames under it traps. A small
	// recursive function reaches it with under 3 MB of Go heap allocated
	// for the native stack; Go code, whose wasm functions have many
	// locals, with about 22 MB.
	//
	// Go's wasm port unwinds the native stack whenever it switches
	// goroutines or grows a goroutine's stack, so a Go guest's start-up
	// and ordinary calls stay within a few dozen frames (29 for the test
	// module's _initialize); but between two stack growths every Go call
	// is a frame, so Go code that recurses more than about 16000 calls
	// deep traps.
	MaxDepth = 16384
)

// Result is an instrumented module.
type Result struct {
	Wasm     []byte // the rewritten module
	HadStart bool   // a start section was moved to the StartExport export
	Checks   int    // number of interrupt checks inserted (function entries + loops)
	// MemoryPages is memory 0's declared initial size in 64 KiB pages,
	// so a host can refuse a module that asks for more than it allows
	// before compiling it.
	MemoryPages uint64
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

// Definitions of the appended globals, in index order: interrupt,
// countdown, depth. Each is (global (mut i32) (i32.const v)).
var (
	interruptGlobal = []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	countdownGlobal = append(appendSigned([]byte{0x7f, 0x01, 0x41}, Countdown), 0x0b)
	depthGlobal     = []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
)

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type section struct {
	id    byte
	start int // offset of the id byte
	body  int // offset of the contents, past the size
	end   int
}

func (s section) name() string { return sectionNames[s.id] + " section" }

// body is a function body to be copied with the instrumentation added.
type body struct {
	start     int    // first byte of the body's contents (the local declarations)
	instr     int    // first instruction, where the entry sequence goes
	end       int    // just past the final end
	blockType []byte // the wrapper block's type: the function's results
	edits     int    // how many of module.edits belong to this body
	loops     int    // how many of those are loops
}

// funcType is an entry of the type section; params and results alias the
// input and hold one value type per byte.
type funcType struct {
	params, results []byte
}

// module is what Instrument learns about its input before writing anything.
type module struct {
	in       []byte
	sections []section

	types           []funcType
	funcTypes       []uint32 // type index of each defined function
	importedFuncs   uint32
	importedGlobals uint32
	definedGlobals  uint32 // global section count
	memories        uint32 // imported and defined
	memory64        bool   // memory 0 has 64-bit addresses
	memoryMin       uint64 // memory 0's initial size in pages
	dataCount       int64  // data count section's count, or -1 without one
	dataSegments    uint32
	startFunc       uint32
	hasStart        bool

	typ, global, export, code int    // index into sections, or -1 if absent
	exportCount               uint32 // entries in the export section
	reserved                  bool   // the reserved export names are allowed

	// newTypes are the result types of the `[] -> [results]` function
	// types to append to the type section, for wrapper blocks of
	// functions with several results; blockTypes maps a result type to
	// its function type's index, existing or new.
	newTypes   [][]byte
	blockTypes map[string]uint32

	bodies []body
	edits  []edit // for all bodies in order
}

// Instrument returns a copy of wasm, a binary WebAssembly module, rewritten
// as the package documentation describes. It never modifies wasm.
func Instrument(wasm []byte) (Result, error) {
	m, err := scan(wasm, false)
	if err != nil {
		return Result{}, fmt.Errorf("wasmguard: %w", err)
	}
	out, err := m.emit()
	if err != nil {
		return Result{}, fmt.Errorf("wasmguard: %w", err)
	}
	checks := len(m.bodies)
	for _, b := range m.bodies {
		checks += b.loops
	}
	return Result{Wasm: out, HadStart: m.hasStart, Checks: checks, MemoryPages: m.memoryMin}, nil
}

// scan splits the module into sections and decodes what the rewrite
// depends on, so that emit cannot fail halfway on malformed input. Tests
// scan Instrument's output too, with reserved set to allow the names it
// exports.
func scan(in []byte, reserved bool) (*module, error) {
	if len(in) < len(wasmHeader) {
		return nil, errors.New("not a WebAssembly module: shorter than the 8-byte header")
	}
	if !bytes.Equal(in[:4], wasmHeader[:4]) {
		return nil, fmt.Errorf("not a WebAssembly module: magic %q, want %q", in[:4], wasmHeader[:4])
	}
	if !bytes.Equal(in[4:8], wasmHeader[4:]) {
		return nil, fmt.Errorf("unsupported WebAssembly binary version % x, want 01 00 00 00", in[4:8])
	}

	m := &module{in: in, dataCount: -1, typ: -1, global: -1, export: -1, code: -1, reserved: reserved}
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

	if len(m.bodies) != len(m.funcTypes) {
		return nil, fmt.Errorf("function section declares %d functions but the code section has %d bodies", len(m.funcTypes), len(m.bodies))
	}
	if m.dataCount >= 0 && m.dataCount != int64(m.dataSegments) {
		return nil, fmt.Errorf("data count section declares %d segments but the data section has %d", m.dataCount, m.dataSegments)
	}
	if len(m.bodies) > 0 {
		if m.memories == 0 {
			return nil, errors.New("the module has no memory: the instrumentation's exits to Go execute memory.grow on memory 0, so the module must define or import one")
		}
		if m.memory64 {
			return nil, errors.New("memory 0 is a 64-bit memory (memory64), which is not supported")
		}
	}
	return m, nil
}

func (m *module) scanSection(s section, r *reader) error {
	var err error
	switch s.id {
	case secCustom:
		// Copied as is; only check that it has the name it must start with.
		_, err = r.name()
	case secType:
		m.typ = len(m.sections)
		err = m.scanTypes(r)
	case secImport:
		err = m.scanImports(r)
	case secFunction:
		err = m.scanFunctions(r)
	case secMemory:
		err = m.scanMemories(r)
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

// scanTypes decodes the function types, whose results give each function
// body's wrapper block its type. Only function types (form 0x60) exist
// before the GC proposal, which the host does not enable.
func (m *module) scanTypes(r *reader) error {
	n, err := r.count("type")
	if err != nil {
		return err
	}
	m.types = make([]funcType, 0, n)
	for i := uint32(0); i < n; i++ {
		var t funcType
		start := r.pos
		form, err := r.byte()
		if err == nil && form != 0x60 {
			err = r.errorf(start, "unsupported type form %#02x, want 0x60 (a function type)", form)
		}
		if err == nil {
			t.params, err = r.valTypes("parameter")
		}
		if err == nil {
			t.results, err = r.valTypes("result")
		}
		if err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		m.types = append(m.types, t)
	}
	return r.expectEnd()
}

// valTypes reads a vector of value types and returns its elements, which
// alias the input.
func (r *reader) valTypes(what string) ([]byte, error) {
	n, err := r.count(what)
	if err != nil {
		return nil, err
	}
	start := r.pos
	for i := uint32(0); i < n; i++ {
		if err := r.valType(); err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, i, err)
		}
	}
	return r.buf[start:r.pos], nil
}

// scanFunctions reads the type index of every defined function.
func (m *module) scanFunctions(r *reader) error {
	n, err := r.count("function")
	if err != nil {
		return err
	}
	m.funcTypes = make([]uint32, n)
	for i := range m.funcTypes {
		if m.funcTypes[i], err = r.u32(); err != nil {
			return fmt.Errorf("function %d: %w", uint64(m.importedFuncs)+uint64(i), err)
		}
	}
	return r.expectEnd()
}

// scanMemories counts the defined memories: the rewrite needs memory 0.
func (m *module) scanMemories(r *reader) error {
	n, err := r.count("memory")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := m.scanMemory(r); err != nil {
			return fmt.Errorf("memory %d: %w", uint64(m.memories), err)
		}
	}
	return r.expectEnd()
}

func (m *module) scanMemory(r *reader) error {
	flags, min, err := r.limits()
	if err != nil {
		return err
	}
	if m.memories == 0 {
		m.memory64 = flags&0x04 != 0
		m.memoryMin = min
	}
	m.memories++
	return nil
}

// scanImports counts the imported functions, memories and globals, which
// come first in their index spaces: the new globals' indices are after all
// globals, and errors name functions by their index.
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
		_, err = r.skipLimits()
		return err
	case kindMemory:
		return m.scanMemory(r)
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

// skipLimits skips the limits of a table or memory type and returns their
// flags. Bit 0 of the flags says a maximum follows, bit 1 marks a shared
// memory (threads) and bit 2 a 64-bit one (memory64), whose bounds are u64.
func (r *reader) skipLimits() (byte, error) {
	flags, _, err := r.limits()
	return flags, err
}

// limits reads the limits of a table or memory type: their flags (see
// skipLimits) and the minimum.
func (r *reader) limits() (byte, uint64, error) {
	flags, err := r.byte()
	if err != nil {
		return 0, 0, err
	}
	if flags > 0x07 {
		return 0, 0, r.errorf(r.pos-1, "invalid limits flags %#02x", flags)
	}
	n := 1
	if flags&0x01 != 0 {
		n = 2
	}
	var min uint64
	for i := 0; i < n; i++ {
		var v uint64
		var err error
		if flags&0x04 != 0 {
			v, err = r.unsigned64()
		} else {
			var v32 uint32
			v32, err = r.u32()
			v = uint64(v32)
		}
		if err != nil {
			return 0, 0, err
		}
		if i == 0 {
			min = v
		}
	}
	return flags, min, nil
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

// reservedExports are the names the instrumented module exports. If the
// guest could export its own "lineage.interrupt", the host would set a
// global that nothing reads.
var reservedExports = map[string]bool{
	InterruptExport: true,
	CountdownExport: true,
	DepthExport:     true,
	StartExport:     true,
}

// scanExports checks that the names the host relies on are not taken.
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
			if s := string(name); reservedExports[s] && !m.reserved {
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

// scanCode walks every function body and records what to change in it.
func (m *module) scanCode(r *reader) error {
	n, err := r.count("function body")
	if err != nil {
		return err
	}
	if n != uint32(len(m.funcTypes)) {
		return fmt.Errorf("function section declares %d functions but the code section has %d bodies", len(m.funcTypes), n)
	}
	m.bodies = make([]body, 0, n)
	for i := uint32(0); i < n; i++ {
		fn := uint64(m.importedFuncs) + uint64(i) // index in the function index space
		b, err := m.scanBody(r, i)
		if err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		m.bodies = append(m.bodies, b)
	}
	return r.expectEnd()
}

func (m *module) scanBody(r *reader, i uint32) (body, error) {
	typeIdx := m.funcTypes[i]
	if typeIdx >= uint32(len(m.types)) {
		return body{}, fmt.Errorf("type index %d out of range: the module has %d types", typeIdx, len(m.types))
	}
	size, err := r.u32()
	if err != nil {
		return body{}, err
	}
	br, err := r.sub(size, "function body")
	if err != nil {
		return body{}, err
	}
	b := body{start: br.pos, end: br.end, blockType: m.blockType(m.types[typeIdx].results)}
	if err := br.skipLocals(); err != nil {
		return body{}, err
	}
	b.instr = br.pos
	before := len(m.edits)
	if m.edits, err = walkBody(&br, m.edits); err != nil {
		return body{}, err
	}
	b.edits = len(m.edits) - before
	for _, e := range m.edits[before:] {
		if e.kind == editLoop {
			b.loops++
		}
	}
	return b, nil
}

// emptyBlockType is the block type of a block without results.
var emptyBlockType = []byte{0x40}

// blockType returns the type of a block that takes no values and leaves
// results on the stack: 0x40 for none, the value type for one, and for
// several the index of a function type `[] -> [results]`, the first such
// in the type section or else one appended to it.
func (m *module) blockType(results []byte) []byte {
	switch len(results) {
	case 0:
		return emptyBlockType
	case 1:
		return results
	}
	if m.blockTypes == nil {
		m.blockTypes = make(map[string]uint32)
		for i := len(m.types) - 1; i >= 0; i-- { // so that the first one wins
			if t := m.types[i]; len(t.params) == 0 && len(t.results) > 1 {
				m.blockTypes[string(t.results)] = uint32(i)
			}
		}
	}
	idx, ok := m.blockTypes[string(results)]
	if !ok {
		// emit rejects a module whose type count would not fit.
		idx = uint32(len(m.types) + len(m.newTypes))
		m.newTypes = append(m.newTypes, results)
		m.blockTypes[string(results)] = idx
	}
	return appendSigned(nil, int64(idx))
}

// code is the instruction sequences that emit inserts.
type code struct {
	check []byte // at every function entry and loop header: interrupt and countdown
	enter []byte // at every function entry, before check: increment depth and limit it
	leave []byte // on every way out of a function but a trap: decrement depth
}

// newCode assembles the inserted sequences for the appended globals,
// which start at index first: interrupt, countdown, depth.
func newCode(first uint32) code {
	get := func(b []byte, idx uint32) []byte { return appendU32(append(b, 0x23), idx) }
	set := func(b []byte, idx uint32) []byte { return appendU32(append(b, 0x24), idx) }
	i32 := func(b []byte, v int64) []byte { return appendSigned(append(b, 0x41), v) }
	interrupt, countdown, depth := first, first+1, first+2
	var c code

	// if (interrupt) unreachable
	c.check = get(c.check, interrupt)
	c.check = append(c.check, 0x04, 0x40, 0x00, 0x0b) // if; unreachable; end
	// countdown = countdown - 1
	c.check = get(c.check, countdown)
	c.check = i32(c.check, 1)
	c.check = append(c.check, 0x6b) // i32.sub
	c.check = set(c.check, countdown)
	// if (countdown == 0) { countdown = Countdown; memory.grow(0) }
	c.check = get(c.check, countdown)
	c.check = append(c.check, 0x45, 0x04, 0x40) // i32.eqz; if
	c.check = i32(c.check, Countdown)
	c.check = set(c.check, countdown)
	c.check = i32(c.check, 0)
	c.check = append(c.check, 0x40, 0x00, 0x1a, 0x0b) // memory.grow 0; drop; end

	// depth = depth + 1; if (depth > MaxDepth) unreachable
	c.enter = get(c.enter, depth)
	c.enter = i32(c.enter, 1)
	c.enter = append(c.enter, 0x6a) // i32.add
	c.enter = set(c.enter, depth)
	c.enter = get(c.enter, depth)
	c.enter = i32(c.enter, MaxDepth)
	c.enter = append(c.enter, 0x4b, 0x04, 0x40, 0x00, 0x0b) // i32.gt_u; if; unreachable; end

	// depth = depth - 1
	c.leave = get(c.leave, depth)
	c.leave = i32(c.leave, 1)
	c.leave = append(c.leave, 0x6b) // i32.sub
	c.leave = set(c.leave, depth)
	return c
}

// emit writes the instrumented module.
func (m *module) emit() ([]byte, error) {
	const added = 3 // interrupt, countdown, depth
	if uint64(m.importedGlobals)+uint64(m.definedGlobals)+added > math.MaxUint32 {
		return nil, errors.New("global section: no global indices left for the instrumentation's globals")
	}
	if uint64(len(m.types))+uint64(len(m.newTypes)) > math.MaxUint32 {
		return nil, errors.New("type section: no type indices left for the wrapper blocks' types")
	}
	firstGlobal := m.importedGlobals + m.definedGlobals
	c := newCode(firstGlobal)

	codeSize, err := m.codeSize(&c)
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
	typeAt, globalAt, exportAt := -1, -1, -1
	if m.typ < 0 && len(m.newTypes) > 0 {
		typeAt = insertAt(sectionRank[secType]) // cannot happen: types without a type section
	}
	if m.global < 0 {
		globalAt = insertAt(sectionRank[secGlobal])
	}
	if m.export < 0 {
		exportAt = insertAt(sectionRank[secExport])
	}

	out := make([]byte, 0, len(m.in)+codeSize-m.codeSectionLen()+128)
	out = append(out, wasmHeader...)
	for i := 0; i <= len(m.sections); i++ {
		if i == typeAt {
			out = m.appendTypeSection(out, section{id: secType, start: -1})
		}
		if i == globalAt {
			out = m.appendGlobalSection(out, section{id: secGlobal, start: -1})
		}
		if i == exportAt {
			out = m.appendExportSection(out, section{id: secExport, start: -1}, firstGlobal)
		}
		if i == len(m.sections) {
			break
		}
		switch s := m.sections[i]; s.id {
		case secType:
			out = m.appendTypeSection(out, s)
		case secStart:
			// Dropped: the function is exported as StartExport instead.
		case secGlobal:
			out = m.appendGlobalSection(out, s)
		case secExport:
			out = m.appendExportSection(out, s, firstGlobal)
		case secCode:
			out = m.appendCodeSection(out, codeSize, &c)
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

func (m *module) appendTypeSection(out []byte, s section) []byte {
	if len(m.newTypes) == 0 {
		return append(out, m.in[s.start:s.end]...)
	}
	var added []byte
	for _, results := range m.newTypes {
		added = append(added, 0x60, 0x00) // func, no parameters
		added = appendU32(added, uint32(len(results)))
		added = append(added, results...)
	}
	count := appendU32(nil, uint32(len(m.types)+len(m.newTypes)))
	return appendSection(out, secType, count, m.rest(s), added)
}

func (m *module) appendGlobalSection(out []byte, s section) []byte {
	count := appendU32(nil, m.definedGlobals+3)
	return appendSection(out, secGlobal, count, m.rest(s), interruptGlobal, countdownGlobal, depthGlobal)
}

func (m *module) appendExportSection(out []byte, s section, firstGlobal uint32) []byte {
	count := m.exportCount // zero when the section is being created
	var added []byte
	added = appendExport(added, InterruptExport, kindGlobal, firstGlobal)
	added = appendExport(added, CountdownExport, kindGlobal, firstGlobal+1)
	added = appendExport(added, DepthExport, kindGlobal, firstGlobal+2)
	count += 3
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

// newSize is the size of b once instrumented; edits are its edits.
//
// The output is the local declarations, enter and check, the wrapper's
// block opcode and type, the instructions with the edits made (the
// original final end closing the wrapper), then leave and a new final end.
func (b body) newSize(c *code, edits []edit) int64 {
	n := int64(b.end-b.start) + int64(len(c.enter)+len(c.check)) + 1 + int64(len(b.blockType)) + int64(len(c.leave)) + 1
	for _, e := range edits {
		switch e.kind {
		case editLoop:
			n += int64(len(c.check))
		case editReturn:
			n += int64(sizeU32(e.depth)) // return (1 byte) becomes br (1 byte) and the depth
		case editTailCall:
			n += int64(len(c.leave))
		}
	}
	return n
}

// codeSize is the size of the new code section's contents.
func (m *module) codeSize(c *code) (int, error) {
	size := int64(sizeU32(uint32(len(m.bodies))))
	edits := m.edits
	for i, b := range m.bodies {
		n := b.newSize(c, edits[:b.edits])
		edits = edits[b.edits:]
		if n > math.MaxUint32 {
			return 0, fmt.Errorf("code section: function %d: too large once instrumented", uint64(m.importedFuncs)+uint64(i))
		}
		size += int64(sizeU32(uint32(n))) + n
	}
	if size > math.MaxUint32 {
		return 0, errors.New("code section: too large once instrumented")
	}
	return int(size), nil
}

// codeSectionLen is the size of the input's code section, header included.
func (m *module) codeSectionLen() int {
	if m.code < 0 {
		return 0
	}
	s := m.sections[m.code]
	return s.end - s.start
}

// appendCodeSection copies the function bodies with the instrumentation
// added. Everything between edits is copied as is, so branch depths,
// immediates and any non-minimal encodings are untouched.
func (m *module) appendCodeSection(out []byte, size int, c *code) []byte {
	out = append(out, secCode)
	out = appendU32(out, uint32(size))
	out = appendU32(out, uint32(len(m.bodies)))
	edits := m.edits
	for _, b := range m.bodies {
		mine := edits[:b.edits]
		edits = edits[b.edits:]
		out = appendU32(out, uint32(b.newSize(c, mine)))
		out = append(out, m.in[b.start:b.instr]...)
		out = append(out, c.enter...)
		out = append(out, c.check...)
		out = append(out, 0x02) // block
		out = append(out, b.blockType...)
		prev := b.instr
		for _, e := range mine {
			out = append(out, m.in[prev:e.at]...)
			prev = e.at
			switch e.kind {
			case editLoop:
				out = append(out, c.check...)
			case editReturn:
				out = append(out, 0x0c) // br
				out = appendU32(out, e.depth)
				prev++ // past the return
			case editTailCall:
				out = append(out, c.leave...)
			}
		}
		out = append(out, m.in[prev:b.end]...) // up to the original final end, which closes the wrapper
		out = append(out, c.leave...)
		out = append(out, 0x0b)
	}
	return out
}

package wasmguard

import "fmt"

// Value types that may appear as a local, a select operand or a one-byte
// block type. Types of later proposals (typed function references, GC,
// exnref) are rejected: their encodings take more than one byte, and
// guessing would desynchronise the walk.
func isValType(b byte) bool {
	switch b {
	case 0x7f, 0x7e, 0x7d, 0x7c, // i32 i64 f32 f64
		0x7b,       // v128
		0x70, 0x6f: // funcref externref
		return true
	}
	return false
}

func isRefType(b byte) bool { return b == 0x70 || b == 0x6f }

// ehOpcodes are the exception-handling instructions, both the legacy and
// the current proposal. Their blocks and catch clauses would need their own
// decoding; the host does not enable the proposal, so they are reported by
// name rather than as merely unknown.
var ehOpcodes = map[byte]string{
	0x06: "try",
	0x07: "catch",
	0x08: "throw",
	0x09: "rethrow",
	0x0a: "throw_ref",
	0x18: "delegate",
	0x19: "catch_all",
	0x1f: "try_table",
}

// Immediate shapes of 0xFD (SIMD) instructions.
const (
	simdUnknown    = iota // not an instruction
	simdNone              // no immediate
	simdMemarg            // memarg
	simdMemargLane        // memarg, then a lane index byte
	simdLane              // a lane index byte
	simdBytes16           // 16 literal bytes (v128.const, i8x16.shuffle)
)

// simdImmediates maps each SIMD sub-opcode of the final fixed-width SIMD
// proposal to the shape of its immediates. The gaps are opcodes the
// proposal never assigned (or withdrew); relaxed SIMD (0x100 and up) is not
// included because wazero does not implement it.
var simdImmediates = func() (t [256]uint8) {
	for i := range t {
		t[i] = simdNone
	}
	for op := 0x00; op <= 0x0b; op++ { // v128.load* and v128.store
		t[op] = simdMemarg
	}
	t[0x0c] = simdBytes16              // v128.const
	t[0x0d] = simdBytes16              // i8x16.shuffle
	for op := 0x15; op <= 0x22; op++ { // extract_lane and replace_lane
		t[op] = simdLane
	}
	for op := 0x54; op <= 0x5b; op++ { // v128.load*_lane and v128.store*_lane
		t[op] = simdMemargLane
	}
	t[0x5c] = simdMemarg // v128.load32_zero
	t[0x5d] = simdMemarg // v128.load64_zero
	for _, op := range []byte{
		0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb,
		0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee,
	} {
		t[op] = simdUnknown
	}
	return t
}()

// Immediate shapes of one-byte opcodes.
const (
	opUnknown       = iota // not an instruction we can decode
	opNone                 // no immediate
	opBlock                // block type (block, if)
	opLoop                 // block type, and a check goes after it
	opEnd                  // end: closes a block or the function
	opReturn               // return: rewritten into a branch to the body's wrapper block
	opU32                  // one u32 (an index or label)
	opU32x2                // two u32s (call_indirect)
	opReturnCall           // return_call: u32; the depth is decremented before it
	opReturnCallInd        // return_call_indirect: two u32s; likewise
	opBrTable              // vec(label) then a default label
	opSelectT              // vec(valtype)
	opMemarg               // memarg
	opI32                  // s32
	opI64                  // s64
	opF32                  // 4 bytes
	opF64                  // 8 bytes
	opRefNull              // reference type byte
	opMisc                 // 0xFC prefix
	opSIMD                 // 0xFD prefix
)

// opImmediates maps each one-byte opcode to the shape of its immediates.
// A table keeps the hot loop of walkBody a single indexed jump.
var opImmediates = func() (t [256]uint8) {
	set := func(shape uint8, ops ...int) {
		for _, op := range ops {
			t[op] = shape
		}
	}
	span := func(shape uint8, from, to int) {
		for op := from; op <= to; op++ {
			t[op] = shape
		}
	}
	set(opNone, 0x00, 0x01, 0x05, 0x1a, 0x1b, 0xd1) // unreachable nop else drop select ref.is_null
	span(opNone, 0x45, 0xc4)                        // numeric, including sign extension
	set(opBlock, 0x02, 0x04)                        // block if
	set(opLoop, 0x03)
	set(opEnd, 0x0b)
	set(opReturn, 0x0f)
	set(opU32, 0x0c, 0x0d, 0x10, 0xd2) // br br_if call ref.func
	span(opU32, 0x20, 0x26)            // local.get/set/tee global.get/set table.get/set
	set(opU32, 0x3f, 0x40)             // memory.size memory.grow: memory index
	set(opU32x2, 0x11)                 // call_indirect: type, table
	set(opReturnCall, 0x12)            // return_call: function
	set(opReturnCallInd, 0x13)         // return_call_indirect: type, table
	set(opBrTable, 0x0e)
	set(opSelectT, 0x1c)
	span(opMemarg, 0x28, 0x3e) // loads and stores
	set(opI32, 0x41)
	set(opI64, 0x42)
	set(opF32, 0x43)
	set(opF64, 0x44)
	set(opRefNull, 0xd0)
	set(opMisc, 0xfc)
	set(opSIMD, 0xfd)
	return t
}()

// Kinds of edit.
const (
	editLoop     = iota // insert the loop check at the offset (just past a loop's block type)
	editReturn          // replace the return opcode at the offset with a br to the wrapper
	editTailCall        // insert the depth decrement before the tail call at the offset
)

// edit is one change to a function body, at an offset in the input.
type edit struct {
	at    int
	kind  uint8
	depth uint32 // editReturn: the nesting depth of the return, the wrapper's label
}

// walkBody decodes the instructions of one function body, from r's
// position (just after the local declarations) to its end, and appends to
// edits, in order, what the rewrite must change: the offset just past each
// loop's block type, where a check goes; each return, with the number of
// blocks it sits in (which is the label of the wrapper block that replaces
// the function's own); and each tail call.
//
// Block nesting is tracked for that depth and to find the function's final
// end, so that a body which stops early or goes on past it is reported
// here rather than producing output that merely fails to compile later.
func walkBody(r *reader, edits []edit) ([]edit, error) {
	depth := uint32(0)
	for r.pos < r.end {
		off := r.pos
		op := r.buf[off]
		r.pos++
		var err error
		switch opImmediates[op] {
		case opNone:
		case opBlock:
			err = r.skipBlockType()
			depth++
		case opLoop:
			err = r.skipBlockType()
			edits = append(edits, edit{at: r.pos, kind: editLoop})
			depth++
		case opEnd:
			if depth == 0 {
				if r.pos != r.end {
					return edits, r.errorf(r.pos, "%d bytes after the function's final end", r.left())
				}
				return edits, nil
			}
			depth--
		case opReturn:
			edits = append(edits, edit{at: off, kind: editReturn, depth: depth})
		case opU32:
			err = r.skipU32()
		case opU32x2:
			if err = r.skipU32(); err == nil {
				err = r.skipU32()
			}
		case opReturnCall:
			edits = append(edits, edit{at: off, kind: editTailCall})
			err = r.skipU32()
		case opReturnCallInd:
			edits = append(edits, edit{at: off, kind: editTailCall})
			if err = r.skipU32(); err == nil {
				err = r.skipU32()
			}
		case opBrTable:
			var n uint32
			if n, err = r.count("br_table label"); err == nil {
				for i := uint32(0); i <= n && err == nil; i++ { // n labels, then the default
					err = r.skipU32()
				}
			}
		case opSelectT:
			var n uint32
			if n, err = r.count("select type"); err == nil {
				for i := uint32(0); i < n && err == nil; i++ {
					err = r.valType()
				}
			}
		case opMemarg:
			err = r.skipMemarg()
		case opI32:
			_, err = r.signed(32)
		case opI64:
			_, err = r.signed(64)
		case opF32:
			err = r.skip(4)
		case opF64:
			err = r.skip(8)
		case opRefNull:
			var t byte
			if t, err = r.byte(); err == nil && !isRefType(t) {
				err = r.errorf(r.pos-1, "invalid reference type %#02x", t)
			}
		case opMisc:
			err = r.skipMisc(off)
		case opSIMD:
			err = r.skipSIMD(off)
		default:
			if name, ok := ehOpcodes[op]; ok {
				return edits, r.errorf(off, "unsupported exception-handling opcode %#02x (%s)", op, name)
			}
			return edits, r.errorf(off, "unknown opcode %#02x", op)
		}
		if err != nil {
			return edits, err
		}
	}
	return edits, r.errorf(r.end, "function body ends without its final end")
}

// skipBlockType skips a block type: 0x40 (empty), a one-byte value type, or
// a non-negative s33 type index.
func (r *reader) skipBlockType() error {
	if r.pos >= r.end {
		return r.eof()
	}
	if b := r.buf[r.pos]; b == 0x40 || isValType(b) {
		r.pos++
		return nil
	}
	start := r.pos
	v, err := r.signed(33)
	if err != nil {
		return err
	}
	if v < 0 {
		return r.errorf(start, "invalid block type %#02x", r.buf[start])
	}
	return nil
}

func (r *reader) valType() error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	if !isValType(b) {
		return r.errorf(r.pos-1, "invalid value type %#02x", b)
	}
	return nil
}

// skipMemarg skips a memarg: alignment, then offset. Multi-memory sets bit
// 6 of the alignment to say that a memory index sits between the two.
func (r *reader) skipMemarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		if err := r.skipU32(); err != nil {
			return err
		}
	}
	return r.skipU32()
}

// skipMisc skips the sub-opcode and immediates of a 0xFC instruction.
func (r *reader) skipMisc(off int) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	var n int // number of u32 immediates
	switch {
	case sub <= 7: // saturating truncation
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill
		n = 1
	case sub == 8, sub == 10, sub == 12, sub == 14:
		// memory.init, memory.copy, table.init, table.copy
		n = 2
	default:
		return r.errorf(off, "unknown opcode 0xfc %#x", sub)
	}
	for ; n > 0; n-- {
		if err := r.skipU32(); err != nil {
			return err
		}
	}
	return nil
}

// skipSIMD skips the sub-opcode and immediates of a 0xFD instruction.
func (r *reader) skipSIMD(off int) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	shape := uint8(simdUnknown)
	if sub < uint32(len(simdImmediates)) {
		shape = simdImmediates[sub]
	}
	switch shape {
	case simdNone:
		return nil
	case simdMemarg:
		return r.skipMemarg()
	case simdMemargLane:
		if err := r.skipMemarg(); err != nil {
			return err
		}
		return r.skip(1)
	case simdLane:
		return r.skip(1)
	case simdBytes16:
		return r.skip(16)
	}
	return r.errorf(off, "unknown opcode 0xfd %#x", sub)
}

// skipLocals skips a function body's local declarations.
func (r *reader) skipLocals() error {
	n, err := r.count("local declaration")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.skipU32(); err != nil {
			return err
		}
		if err := r.valType(); err != nil {
			return fmt.Errorf("local declaration %d: %w", i, err)
		}
	}
	return nil
}

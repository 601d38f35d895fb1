package wasmguard

import "fmt"

// reader decodes one region (a section, a function body, ...) of a module.
// It indexes the whole input rather than a sub-slice so that every offset it
// reports in an error is an offset in the caller's original bytes, which is
// what a person looking at the file with a hex dump or wasm-objdump needs.
type reader struct {
	buf  []byte // the whole module
	pos  int    // next byte to read
	end  int    // end of the region; bytes past it belong to someone else
	what string // the region's name, for "unexpected end of ..." errors
}

// errorf returns an error about the bytes at off. Every decoding error goes
// through here so that all of them say where they happened.
func (r *reader) errorf(off int, format string, args ...any) error {
	return fmt.Errorf(format+" at offset %#x", append(args, off)...)
}

func (r *reader) eof() error {
	return r.errorf(r.pos, "unexpected end of %s", r.what)
}

func (r *reader) left() int { return r.end - r.pos }

func (r *reader) byte() (byte, error) {
	if r.pos >= r.end {
		return 0, r.eof()
	}
	b := r.buf[r.pos]
	r.pos++
	return b, nil
}

func (r *reader) skip(n int) error {
	if n > r.left() {
		r.pos = r.end
		return r.eof()
	}
	r.pos += n
	return nil
}

// u32 reads an unsigned LEB128 integer. The spec allows at most 5 bytes,
// with the unused high bits of the last one zero; anything else is malformed
// and rejecting it here keeps a forged length from wrapping around.
func (r *reader) u32() (uint32, error) {
	start := r.pos
	var v uint32
	for shift := 0; ; shift += 7 {
		if r.pos >= r.end {
			return 0, r.eof()
		}
		b := r.buf[r.pos]
		r.pos++
		if shift == 28 {
			if b&0x80 != 0 {
				return 0, r.errorf(start, "LEB128 integer longer than 5 bytes")
			}
			if b > 0x0f {
				return 0, r.errorf(start, "LEB128 integer overflows 32 bits")
			}
		}
		v |= uint32(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
}

// skipU32 is u32 for immediates whose value does not matter. Almost all of
// them are below 128, so the one-byte case is worth handling inline.
func (r *reader) skipU32() error {
	if r.pos < r.end && r.buf[r.pos] < 0x80 {
		r.pos++
		return nil
	}
	_, err := r.u32()
	return err
}

// signed reads a signed LEB128 integer of the given width (32, 33 or 64
// bits), enforcing the spec's length limit and that the unused bits of the
// last byte are copies of the sign bit.
func (r *reader) signed(bits int) (int64, error) {
	start := r.pos
	maxLen := (bits + 6) / 7
	var v int64
	shift := 0
	for i := 0; ; i++ {
		if r.pos >= r.end {
			return 0, r.eof()
		}
		b := r.buf[r.pos]
		r.pos++
		if i == maxLen-1 {
			if b&0x80 != 0 {
				return 0, r.errorf(start, "LEB128 integer longer than %d bytes", maxLen)
			}
			// The last byte holds k significant bits; the bits above the
			// sign bit must all equal it.
			k := bits - 7*(maxLen-1)
			mask := byte(0x7f<<(k-1)) & 0x7f
			if s := b & mask; s != 0 && s != mask {
				return 0, r.errorf(start, "LEB128 integer overflows %d bits", bits)
			}
		}
		v |= int64(b&0x7f) << shift
		shift += 7
		if b < 0x80 {
			if shift < 64 && b&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

// count reads the length of a vector. Every element takes at least one
// byte, so a count larger than the bytes left is malformed; checking it up
// front gives a clear error instead of one about some element deep inside.
func (r *reader) count(what string) (uint32, error) {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n) > uint64(r.left()) {
		return 0, r.errorf(start, "%s count %d exceeds the %d bytes left in the %s", what, n, r.left(), r.what)
	}
	return n, nil
}

// sub splits off the next n bytes as a region of its own, named what.
func (r *reader) sub(n uint32, what string) (reader, error) {
	if uint64(n) > uint64(r.left()) {
		return reader{}, r.errorf(r.pos, "%s of %d bytes runs past the end of the %s (%d bytes left)", what, n, r.what, r.left())
	}
	s := reader{buf: r.buf, pos: r.pos, end: r.pos + int(n), what: what}
	r.pos = s.end
	return s, nil
}

// name reads a length-prefixed name (a vec(byte)) and returns its bytes,
// which alias the input.
func (r *reader) name() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	s, err := r.sub(n, "name")
	if err != nil {
		return nil, err
	}
	return s.buf[s.pos:s.end], nil
}

// expectEnd reports bytes left over in a region that should have been used
// up, which would otherwise be silently copied into the output.
func (r *reader) expectEnd() error {
	if r.pos != r.end {
		return r.errorf(r.pos, "%d unexpected trailing bytes in %s", r.left(), r.what)
	}
	return nil
}

// appendU32 appends v in the shortest unsigned LEB128 encoding.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// sizeU32 is the length of appendU32's encoding of v.
func sizeU32(v uint32) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendSigned appends v in the shortest signed LEB128 encoding, as used
// by i32.const and by block types given as a type index (an s33, whose
// one-byte forms 0x40 and up would otherwise read as 0x40, the empty
// block type, or as a negative value type).
func appendSigned(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

package abi

import (
	"unicode/utf8"
	"unsafe"
)

// Fast paths for the four codecs a plugin runs on every call: decoding a
// request without copying, and encoding an answer. Plugins run as
// WebAssembly, where Go code is several times slower than natively and
// every call and loop costs; the general codecs (a loop over slot tables,
// a header reader shared by all messages) cost a Go plugin about a
// microsecond per decision before its policy runs at all.
//
// Each fast path only answers "valid, and here is the result" or "not
// valid"; when it says no, the general codec runs and produces the error
// that names the field. So the fast paths need not build errors, and a
// disagreement could only make an invalid message reach the general
// codec, never the reverse: FuzzFastPaths checks that they accept exactly
// what the general codecs accept, with equal results.

// aliasString returns b[off:off+n] as a string sharing b's memory, where
// off and n are read at b[at:]; n may be at most max and the bytes must
// lie after the fixed part (ss bytes). ok is false when they do not.
func aliasString(b []byte, at, ss int, max uint32) (s string, ok bool) {
	p := b[at : at+8 : at+8]
	off, n := le.Uint32(p), le.Uint32(p[4:])
	if n == 0 {
		return "", true
	}
	if n > max || off < uint32(ss) || uint64(off)+uint64(n) > uint64(len(b)) {
		return "", false
	}
	return unsafe.String(&b[off], int(n)), true
}

// header checks the common header of a message of kind k whose fixed part
// is at least min bytes, and returns struct_size and op.
func header(b []byte, k Kind, min int) (ss int, op uint16, ok bool) {
	if len(b) < min || len(b) > MaxMessage {
		return 0, 0, false
	}
	h := b[:HeaderSize:HeaderSize]
	s, total := le.Uint32(h), le.Uint32(h[4:])
	if le.Uint16(h[8:]) != Major || Kind(le.Uint16(h[12:])) != k || total != uint32(len(b)) || s < uint32(min) || s > total {
		return 0, 0, false
	}
	return int(s), le.Uint16(h[14:]), true
}

func (r *DecideRequest) decodeAliasFast(b []byte) bool {
	ss, op, ok := header(b, KindDecide, DecideRequestSize)
	if !ok {
		return false
	}
	f := b[:DecideRequestSize:DecideRequestSize]
	o, fs, proto := Op(op), FSKind(f[16]), Proto(f[17])
	if !o.Valid() || !fs.Valid() || !proto.Valid() {
		return false
	}
	zone, ok1 := aliasString(b, 40, ss, MaxZone)
	state, ok2 := aliasString(b, 48, ss, MaxState)
	object, ok3 := aliasString(b, 56, ss, MaxObject)
	target, ok4 := aliasString(b, 64, ss, MaxZone)
	if !(ok1 && ok2 && ok3 && ok4) {
		return false
	}
	r.Op, r.FS, r.Proto, r.Port = o, fs, proto, le.Uint16(f[18:])
	r.Zone, r.State, r.Object, r.TargetZone = zone, state, object, target
	copy(r.Addr[:], f[20:36])
	return true
}

func (r *ClassifyRequest) decodeAliasFast(b []byte) bool {
	ss, op, ok := header(b, KindClassify, ClassifyRequestSize)
	if !ok {
		return false
	}
	f := b[:ClassifyRequestSize:ClassifyRequestSize]
	flags, fs := le.Uint32(f[16:]), FSKind(f[20])
	if Op(op) != OpProcessExec || flags&^classifyFlagsKnown != 0 || !fs.Valid() {
		return false
	}
	exe, ok1 := aliasString(b, 24, ss, MaxExe)
	czone, ok2 := aliasString(b, 32, ss, MaxZone)
	cstate, ok3 := aliasString(b, 40, ss, MaxState)
	cexe, ok4 := aliasString(b, 48, ss, MaxExe)
	if !(ok1 && ok2 && ok3 && ok4) {
		return false
	}
	r.Flags, r.FS = flags, fs
	r.Exe, r.CreatorZone, r.CreatorState, r.CreatorExe = exe, czone, cstate, cexe
	return true
}

// putString writes s at off and its (offset, length) slot at at, and
// returns the offset after it. An empty string has slot (0, 0).
func putString(dst []byte, at, off int, s string) int {
	p := dst[at : at+8 : at+8]
	if len(s) == 0 {
		le.PutUint64(p, 0)
		return off
	}
	le.PutUint32(p, uint32(off))
	le.PutUint32(p[4:], uint32(len(s)))
	return off + copy(dst[off:], s)
}

func putHeaderFast(h []byte, ss, total int, k Kind, op Op) {
	h = h[:HeaderSize:HeaderSize]
	le.PutUint32(h, uint32(ss))
	le.PutUint32(h[4:], uint32(total))
	le.PutUint16(h[8:], Major)
	le.PutUint16(h[10:], Minor)
	le.PutUint16(h[12:], uint16(k))
	le.PutUint16(h[14:], uint16(op))
}

func (r *DecideResponse) encodeFast(dst []byte, op Op) int {
	s := &r.Scope
	n := DecideResponseSize + len(r.Rule) + len(r.Reason)
	switch {
	case len(dst) < n, len(r.Rule) > MaxRule, len(r.Reason) > MaxReason,
		!r.Verdict.Valid(), !s.Subject.Valid(), !s.Object.Valid(), s.TTLMillis > MaxTTLMillis:
		return 0
	}
	switch s.Object {
	case ObjectPrefix:
		if s.PrefixLen == 0 || s.PortLo|s.PortHi != 0 {
			return 0
		}
	case ObjectPortRange:
		if s.PortLo > s.PortHi || s.PrefixLen != 0 {
			return 0
		}
	default:
		if s.PrefixLen != 0 || s.PortLo|s.PortHi != 0 {
			return 0
		}
	}
	if !utf8.ValidString(r.Rule) || !utf8.ValidString(r.Reason) {
		return 0
	}
	putHeaderFast(dst, DecideResponseSize, n, KindDecide, op)
	f := dst[:DecideResponseSize:DecideResponseSize]
	f[16], f[17], f[18], f[19] = byte(r.Verdict), byte(s.Subject), byte(s.Object), 0
	le.PutUint32(f[20:], s.PrefixLen)
	le.PutUint16(f[24:], s.PortLo)
	le.PutUint16(f[26:], s.PortHi)
	le.PutUint32(f[28:], s.TTLMillis)
	off := putString(dst, 32, DecideResponseSize, r.Rule)
	putString(dst, 40, off, r.Reason)
	return n
}

func (r *ClassifyResponse) encodeFast(dst []byte) int {
	n := ClassifyResponseSize + len(r.Zone) + len(r.State) + len(r.Rule) + len(r.Reason)
	switch {
	case len(dst) < n, len(r.State) > MaxState, len(r.Rule) > MaxRule, len(r.Reason) > MaxReason,
		r.Flags&^classifyRespFlagsKnown != 0:
		return 0
	case r.Classified && !ValidZone(r.Zone):
		return 0
	case !r.Classified && (r.Zone != "" || r.Flags != 0):
		return 0
	case !utf8.ValidString(r.Rule) || !utf8.ValidString(r.Reason):
		return 0
	}
	putHeaderFast(dst, ClassifyResponseSize, n, KindClassify, OpProcessExec)
	f := dst[:ClassifyResponseSize:ClassifyResponseSize]
	var c byte
	if r.Classified {
		c = 1
	}
	f[16], f[17], f[18], f[19] = c, r.Flags, 0, 0
	le.PutUint32(f[20:], 0)
	off := putString(dst, 24, ClassifyResponseSize, r.Zone)
	off = putString(dst, 32, off, r.State)
	off = putString(dst, 40, off, r.Rule)
	putString(dst, 48, off, r.Reason)
	return n
}

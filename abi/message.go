package abi

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
	"unsafe"
)

// Fixed-part sizes of ABI 1.0 messages (struct_size). A reader accepts a
// larger struct_size from a newer minor version and ignores the extra bytes;
// it rejects a smaller one.
const (
	HeaderSize           = 16
	DecideRequestSize    = 72
	ClassifyRequestSize  = 56
	DecideResponseSize   = 48
	ClassifyResponseSize = 56
)

// Classify request flags.
const (
	// FlagInPlace: the process replaced its own image (execve without a new
	// process); the creator fields describe the process itself before exec.
	FlagInPlace uint32 = 1 << 0
	// FlagCreatorUnknown: the process predates the host; no creator fields
	// are set and the plugin must classify by the executable alone.
	FlagCreatorUnknown uint32 = 1 << 1
	classifyFlagsKnown        = FlagInPlace | FlagCreatorUnknown
)

// Classify response flags.
const (
	// FlagInherited: the zone was taken from the creator, so the ancestor
	// that set the creator's zone also set this one (the host uses it to
	// report the lineage that explains a decision).
	FlagInherited          uint8 = 1 << 0
	classifyRespFlagsKnown       = FlagInherited
)

// DecideRequest asks whether a subject in Zone, with plugin State, may
// perform Op on an object. It carries nothing else about the subject (no
// pid, no executable): a plugin's answer may depend only on what the host's
// decision cache keys on, which is what makes caching sound. A plugin that
// needs more about the subject records it in State at classify time.
type DecideRequest struct {
	Op    Op
	Zone  string // the subject's zone
	State string // the subject's opaque state from this plugin's classify

	// Path-like objects (process.exec, code.load, file.*), registry keys
	// (registry.*), and the target's executable path (mem.*).
	Object string
	FS     FSKind // filesystem kind of a path object

	// Network objects (net.*). Addr is an IPv6 address or an IPv4-mapped
	// IPv6 address (::ffff:a.b.c.d).
	Proto Proto
	Port  uint16
	Addr  [16]byte

	// TargetZone is the zone of the target process of mem.* ops.
	TargetZone string
}

// ClassifyRequest asks a plugin to classify a process that is starting
// (or replacing its image) into a zone.
type ClassifyRequest struct {
	Flags        uint32 // FlagInPlace, FlagCreatorUnknown
	Exe          string // the executable being started
	FS           FSKind // filesystem kind of Exe
	CreatorZone  string // zone of the creating process ("" when unknown)
	CreatorState string // this plugin's state for the creator
	CreatorExe   string // the creator's executable
}

// InPlace reports whether the request is an exec without a new process.
func (r *ClassifyRequest) InPlace() bool { return r.Flags&FlagInPlace != 0 }

// CreatorUnknown reports whether the process predates the host.
func (r *ClassifyRequest) CreatorUnknown() bool { return r.Flags&FlagCreatorUnknown != 0 }

// Scope says which neighbouring requests a decide answer also covers, and
// for how long. The zero Scope covers only the exact request and is not
// cached (TTLMillis 0).
type Scope struct {
	Subject   ScopeSubject
	Object    ScopeObject
	PrefixLen uint32 // ObjectPrefix: bytes of the request's Object
	PortLo    uint16 // ObjectPortRange: inclusive bounds
	PortHi    uint16
	TTLMillis uint32 // 0: do not cache; at most MaxTTLMillis
}

// DecideResponse is a plugin's answer to a DecideRequest.
type DecideResponse struct {
	Verdict Verdict
	Scope   Scope
	Rule    string // short stable identifier of the rule that decided
	Reason  string // human-readable explanation
}

// ClassifyResponse is a plugin's answer to a ClassifyRequest.
type ClassifyResponse struct {
	Classified bool   // false: the plugin abstains from setting the zone (it may still keep State)
	Flags      uint8  // FlagInherited
	Zone       string // required when Classified
	State      string // opaque, handed back in later requests
	Rule       string
	Reason     string
}

// Inherited reports whether the zone came from the creator.
func (r *ClassifyResponse) Inherited() bool { return r.Flags&FlagInherited != 0 }

// strSlot describes one (offset, length) string field of a fixed part.
type strSlot struct {
	name string
	at   int // byte offset of the slot in the fixed part
	max  int
	utf8 bool
}

var (
	decideReqSlots = [...]strSlot{
		{"zone", 40, MaxZone, false},
		{"state", 48, MaxState, false},
		{"object", 56, MaxObject, false},
		{"target_zone", 64, MaxZone, false},
	}
	classifyReqSlots = [...]strSlot{
		{"exe", 24, MaxExe, false},
		{"creator_zone", 32, MaxZone, false},
		{"creator_state", 40, MaxState, false},
		{"creator_exe", 48, MaxExe, false},
	}
	decideRespSlots = [...]strSlot{
		{"rule", 32, MaxRule, true},
		{"reason", 40, MaxReason, true},
	}
	classifyRespSlots = [...]strSlot{
		{"zone", 24, MaxZone, false},
		{"state", 32, MaxState, false},
		{"rule", 40, MaxRule, true},
		{"reason", 48, MaxReason, true},
	}
)

const (
	msgDecideReq    = "decide request"
	msgClassifyReq  = "classify request"
	msgDecideResp   = "decide response"
	msgClassifyResp = "classify response"
)

var le = binary.LittleEndian

// Size returns the encoded size of r.
func (r *DecideRequest) Size() int {
	return DecideRequestSize + len(r.Zone) + len(r.State) + len(r.Object) + len(r.TargetZone)
}

// Encode writes r into dst in canonical form and returns the number of bytes
// written. It does not allocate, so the host can encode straight into a
// plugin's I/O buffer.
func (r *DecideRequest) Encode(dst []byte) (int, error) {
	if !r.Op.Valid() {
		return 0, &FieldError{msgDecideReq, "op", uint16(r.Op), "a known op (1..12)"}
	}
	if !r.FS.Valid() {
		return 0, &FieldError{msgDecideReq, "fs", uint8(r.FS), "0 (local), 1 (network) or 2 (removable)"}
	}
	if !r.Proto.Valid() {
		return 0, &FieldError{msgDecideReq, "proto", uint8(r.Proto), "0, 6 (tcp) or 17 (udp)"}
	}
	strs := [...]string{r.Zone, r.State, r.Object, r.TargetZone}
	n, err := begin(dst, msgDecideReq, DecideRequestSize, decideReqSlots[:], strs[:])
	if err != nil {
		return 0, err
	}
	putHeader(dst, DecideRequestSize, n, KindDecide, r.Op)
	dst[16] = byte(r.FS)
	dst[17] = byte(r.Proto)
	le.PutUint16(dst[18:], r.Port)
	copy(dst[20:36], r.Addr[:])
	le.PutUint32(dst[36:], 0)
	putStrings(dst, DecideRequestSize, decideReqSlots[:], strs[:])
	return n, nil
}

// Decode parses b, which must be exactly one message, into r. Strings are
// copied, so r stays valid after b is reused.
func (r *DecideRequest) Decode(b []byte) error { return r.decode(b, false) }

// DecodeAlias is Decode without copying: r's strings share b's memory and
// are valid only while b is unchanged. Plugins use it to answer without
// allocating (the Go SDK does), which keeps the guest's garbage collector
// out of the decision path.
func (r *DecideRequest) DecodeAlias(b []byte) error {
	if r.decodeAliasFast(b) {
		return nil
	}
	return r.decode(b, true)
}

func (r *DecideRequest) decode(b []byte, alias bool) error {
	ss, op, err := readHeader(b, msgDecideReq, KindDecide, DecideRequestSize)
	if err != nil {
		return err
	}
	var strs [len(decideReqSlots)]string
	if err := decodeStrings(b, ss, msgDecideReq, decideReqSlots[:], strs[:], alias); err != nil {
		return err
	}
	o := Op(op)
	switch {
	case !o.Valid():
		return &FieldError{msgDecideReq, "op", op, "a known op (1..12)"}
	case !FSKind(b[16]).Valid():
		return &FieldError{msgDecideReq, "fs", b[16], "0 (local), 1 (network) or 2 (removable)"}
	case !Proto(b[17]).Valid():
		return &FieldError{msgDecideReq, "proto", b[17], "0, 6 (tcp) or 17 (udp)"}
	}
	*r = DecideRequest{
		Op: o, FS: FSKind(b[16]), Proto: Proto(b[17]), Port: le.Uint16(b[18:]),
		Zone: strs[0], State: strs[1], Object: strs[2], TargetZone: strs[3],
	}
	copy(r.Addr[:], b[20:36])
	return nil
}

// Size returns the encoded size of r.
func (r *ClassifyRequest) Size() int {
	return ClassifyRequestSize + len(r.Exe) + len(r.CreatorZone) + len(r.CreatorState) + len(r.CreatorExe)
}

// Encode writes r into dst in canonical form; see DecideRequest.Encode.
func (r *ClassifyRequest) Encode(dst []byte) (int, error) {
	if r.Flags&^classifyFlagsKnown != 0 {
		return 0, &FieldError{msgClassifyReq, "flags", r.Flags, "only bits 0 (in place) and 1 (creator unknown)"}
	}
	if !r.FS.Valid() {
		return 0, &FieldError{msgClassifyReq, "fs", uint8(r.FS), "0 (local), 1 (network) or 2 (removable)"}
	}
	strs := [...]string{r.Exe, r.CreatorZone, r.CreatorState, r.CreatorExe}
	n, err := begin(dst, msgClassifyReq, ClassifyRequestSize, classifyReqSlots[:], strs[:])
	if err != nil {
		return 0, err
	}
	putHeader(dst, ClassifyRequestSize, n, KindClassify, OpProcessExec)
	le.PutUint32(dst[16:], r.Flags)
	dst[20], dst[21], dst[22], dst[23] = byte(r.FS), 0, 0, 0
	putStrings(dst, ClassifyRequestSize, classifyReqSlots[:], strs[:])
	return n, nil
}

// Decode parses b into r; see DecideRequest.Decode.
func (r *ClassifyRequest) Decode(b []byte) error { return r.decode(b, false) }

// DecodeAlias is Decode without copying; see DecideRequest.DecodeAlias.
func (r *ClassifyRequest) DecodeAlias(b []byte) error {
	if r.decodeAliasFast(b) {
		return nil
	}
	return r.decode(b, true)
}

func (r *ClassifyRequest) decode(b []byte, alias bool) error {
	ss, op, err := readHeader(b, msgClassifyReq, KindClassify, ClassifyRequestSize)
	if err != nil {
		return err
	}
	var strs [len(classifyReqSlots)]string
	if err := decodeStrings(b, ss, msgClassifyReq, classifyReqSlots[:], strs[:], alias); err != nil {
		return err
	}
	flags := le.Uint32(b[16:])
	switch {
	case Op(op) != OpProcessExec:
		return &FieldError{msgClassifyReq, "op", op, "1 (process.exec)"}
	case flags&^classifyFlagsKnown != 0:
		// Unknown flags may carry meaning the plugin cannot honour, so
		// they are an error rather than silently ignored.
		return &FieldError{msgClassifyReq, "flags", flags, "only bits 0 (in place) and 1 (creator unknown)"}
	case !FSKind(b[20]).Valid():
		return &FieldError{msgClassifyReq, "fs", b[20], "0 (local), 1 (network) or 2 (removable)"}
	}
	*r = ClassifyRequest{
		Flags: flags, FS: FSKind(b[20]),
		Exe: strs[0], CreatorZone: strs[1], CreatorState: strs[2], CreatorExe: strs[3],
	}
	return nil
}

// Validate checks the fields of r that do not depend on the request.
func (r *DecideResponse) Validate() error {
	s := &r.Scope
	switch {
	case !r.Verdict.Valid():
		return &FieldError{msgDecideResp, "verdict", uint8(r.Verdict), "0 (abstain), 1 (allow) or 2 (deny)"}
	case !s.Subject.Valid():
		return &FieldError{msgDecideResp, "scope_subject", uint8(s.Subject), "0 (zone+state), 1 (zone) or 2 (all subjects)"}
	case !s.Object.Valid():
		return &FieldError{msgDecideResp, "scope_object", uint8(s.Object), "0 (exact), 1 (prefix), 2 (port range) or 3 (any)"}
	case s.TTLMillis > MaxTTLMillis:
		return &FieldError{msgDecideResp, "ttl_ms", s.TTLMillis, fmt.Sprintf("at most %d", MaxTTLMillis)}
	case s.Object == ObjectPrefix && s.PrefixLen == 0:
		return &FieldError{msgDecideResp, "prefix_len", s.PrefixLen, "at least 1 with a prefix scope"}
	case s.Object != ObjectPrefix && s.PrefixLen != 0:
		return &FieldError{msgDecideResp, "prefix_len", s.PrefixLen, "0 unless the scope is a prefix"}
	case s.Object == ObjectPortRange && s.PortLo > s.PortHi:
		return &FieldError{msgDecideResp, "port_lo", s.PortLo, fmt.Sprintf("at most port_hi (%d)", s.PortHi)}
	case s.Object != ObjectPortRange && (s.PortLo != 0 || s.PortHi != 0):
		return &FieldError{msgDecideResp, "port_lo", s.PortLo, "0 unless the scope is a port range"}
	}
	return checkText(msgDecideResp, []strSlot{decideRespSlots[0], decideRespSlots[1]}, r.Rule, r.Reason)
}

// CheckScope checks that the scope r claims contains req, the request it
// answers: a prefix must be a prefix of req's path or key, a port range must
// hold req's port. A scope that does not contain its own request is a
// malformed answer.
func (r *DecideResponse) CheckScope(req *DecideRequest) error {
	s := &r.Scope
	switch s.Object {
	case ObjectPrefix:
		if k := req.Op.Object(); k != ObjectPath && k != ObjectKey {
			return &FieldError{msgDecideResp, "scope_object", "prefix", "a path or registry op, not " + req.Op.String()}
		}
		if int(s.PrefixLen) > len(req.Object) {
			return &FieldError{msgDecideResp, "prefix_len", s.PrefixLen, fmt.Sprintf("at most the object's length (%d)", len(req.Object))}
		}
		if s.PrefixLen == 0 {
			return &FieldError{msgDecideResp, "prefix_len", 0, "at least 1 with a prefix scope"}
		}
		if n := int(s.PrefixLen); n < len(req.Object) && !IsSeparator(req.Object[n-1]) {
			return &FieldError{msgDecideResp, "prefix_len", s.PrefixLen, `a prefix ending just after a '/' or '\' of the object, or the whole object`}
		}
	case ObjectPortRange:
		if req.Op.Object() != ObjectEndpoint {
			return &FieldError{msgDecideResp, "scope_object", "port-range", "a net op, not " + req.Op.String()}
		}
		if req.Port < s.PortLo || req.Port > s.PortHi {
			return &FieldError{msgDecideResp, "port_lo", fmt.Sprintf("%d..%d", s.PortLo, s.PortHi), fmt.Sprintf("a range holding the request's port %d", req.Port)}
		}
	}
	return nil
}

// IsSeparator reports whether c separates path components or registry key
// names. A prefix scope ends just after one (or at the object's end), so a
// host looks up prefix scopes at separator positions only, however many
// prefix lengths its cache holds.
func IsSeparator(c byte) bool { return c == '/' || c == '\\' }

// Size returns the encoded size of r.
func (r *DecideResponse) Size() int { return DecideResponseSize + len(r.Rule) + len(r.Reason) }

// Encode writes r into dst in canonical form. op echoes the request's op.
func (r *DecideResponse) Encode(dst []byte, op Op) (int, error) {
	if n := r.encodeFast(dst, op); n > 0 {
		return n, nil
	}
	return r.encode(dst, op)
}

// encode is Encode's general path, which names what is wrong.
func (r *DecideResponse) encode(dst []byte, op Op) (int, error) {
	if err := r.Validate(); err != nil {
		return 0, err
	}
	strs := [...]string{r.Rule, r.Reason}
	n, err := begin(dst, msgDecideResp, DecideResponseSize, decideRespSlots[:], strs[:])
	if err != nil {
		return 0, err
	}
	putHeader(dst, DecideResponseSize, n, KindDecide, op)
	s := &r.Scope
	dst[16], dst[17], dst[18], dst[19] = byte(r.Verdict), byte(s.Subject), byte(s.Object), 0
	le.PutUint32(dst[20:], s.PrefixLen)
	le.PutUint16(dst[24:], s.PortLo)
	le.PutUint16(dst[26:], s.PortHi)
	le.PutUint32(dst[28:], s.TTLMillis)
	putStrings(dst, DecideResponseSize, decideRespSlots[:], strs[:])
	return n, nil
}

// Decode parses and validates b into r. wantOp is the op of the request
// being answered; a response for another op is malformed.
func (r *DecideResponse) Decode(b []byte, wantOp Op) error { return r.decode(b, wantOp, false) }

// DecodeAlias is Decode without copying: r's strings share b's memory and
// are valid only while b is unchanged. A host that reads answers out of a
// plugin's memory uses it to copy (or intern) the strings itself.
func (r *DecideResponse) DecodeAlias(b []byte, wantOp Op) error { return r.decode(b, wantOp, true) }

func (r *DecideResponse) decode(b []byte, wantOp Op, alias bool) error {
	ss, op, err := readHeader(b, msgDecideResp, KindDecide, DecideResponseSize)
	if err != nil {
		return err
	}
	if Op(op) != wantOp {
		return &FieldError{msgDecideResp, "op", op, fmt.Sprintf("%d (%s), the request's op", uint16(wantOp), wantOp)}
	}
	var strs [len(decideRespSlots)]string
	if err := decodeStrings(b, ss, msgDecideResp, decideRespSlots[:], strs[:], alias); err != nil {
		return err
	}
	*r = DecideResponse{
		Verdict: Verdict(b[16]),
		Scope: Scope{
			Subject: ScopeSubject(b[17]), Object: ScopeObject(b[18]),
			PrefixLen: le.Uint32(b[20:]), PortLo: le.Uint16(b[24:]), PortHi: le.Uint16(b[26:]),
			TTLMillis: le.Uint32(b[28:]),
		},
		Rule: strs[0], Reason: strs[1],
	}
	return r.Validate()
}

// Validate checks r's fields.
func (r *ClassifyResponse) Validate() error {
	switch {
	case r.Flags&^classifyRespFlagsKnown != 0:
		return &FieldError{msgClassifyResp, "flags", r.Flags, "only bit 0 (inherited)"}
	case r.Classified && !ValidZone(r.Zone):
		return &FieldError{msgClassifyResp, "zone", fmt.Sprintf("%q", r.Zone), "1..64 bytes of [a-z0-9._-]"}
	case !r.Classified && r.Zone != "":
		return &FieldError{msgClassifyResp, "zone", fmt.Sprintf("%q", r.Zone), "empty when abstaining"}
	case !r.Classified && r.Flags != 0:
		return &FieldError{msgClassifyResp, "flags", r.Flags, "0 when abstaining"}
	case len(r.State) > MaxState:
		return &FieldError{msgClassifyResp, "state", fmt.Sprintf("%d bytes", len(r.State)), fmt.Sprintf("at most %d bytes", MaxState)}
	}
	return checkText(msgClassifyResp, []strSlot{classifyRespSlots[2], classifyRespSlots[3]}, r.Rule, r.Reason)
}

// Size returns the encoded size of r.
func (r *ClassifyResponse) Size() int {
	return ClassifyResponseSize + len(r.Zone) + len(r.State) + len(r.Rule) + len(r.Reason)
}

// Encode writes r into dst in canonical form.
func (r *ClassifyResponse) Encode(dst []byte) (int, error) {
	if n := r.encodeFast(dst); n > 0 {
		return n, nil
	}
	return r.encode(dst)
}

// encode is Encode's general path, which names what is wrong.
func (r *ClassifyResponse) encode(dst []byte) (int, error) {
	if err := r.Validate(); err != nil {
		return 0, err
	}
	strs := [...]string{r.Zone, r.State, r.Rule, r.Reason}
	n, err := begin(dst, msgClassifyResp, ClassifyResponseSize, classifyRespSlots[:], strs[:])
	if err != nil {
		return 0, err
	}
	putHeader(dst, ClassifyResponseSize, n, KindClassify, OpProcessExec)
	var c byte
	if r.Classified {
		c = 1
	}
	dst[16], dst[17], dst[18], dst[19] = c, r.Flags, 0, 0
	le.PutUint32(dst[20:], 0)
	putStrings(dst, ClassifyResponseSize, classifyRespSlots[:], strs[:])
	return n, nil
}

// Decode parses and validates b into r.
func (r *ClassifyResponse) Decode(b []byte) error { return r.decode(b, false) }

// DecodeAlias is Decode without copying; see DecideResponse.DecodeAlias.
func (r *ClassifyResponse) DecodeAlias(b []byte) error { return r.decode(b, true) }

func (r *ClassifyResponse) decode(b []byte, alias bool) error {
	ss, op, err := readHeader(b, msgClassifyResp, KindClassify, ClassifyResponseSize)
	if err != nil {
		return err
	}
	if Op(op) != OpProcessExec {
		return &FieldError{msgClassifyResp, "op", op, "1 (process.exec)"}
	}
	var strs [len(classifyRespSlots)]string
	if err := decodeStrings(b, ss, msgClassifyResp, classifyRespSlots[:], strs[:], alias); err != nil {
		return err
	}
	if b[16] > 1 {
		return &FieldError{msgClassifyResp, "classified", b[16], "0 (abstain) or 1 (classified)"}
	}
	*r = ClassifyResponse{
		Classified: b[16] == 1, Flags: b[17],
		Zone: strs[0], State: strs[1], Rule: strs[2], Reason: strs[3],
	}
	return r.Validate()
}

// ErrorMessage encodes a failing call's message into dst: a u32 length
// followed by at most MaxError bytes. It returns the bytes written.
func ErrorMessage(dst []byte, msg string) int {
	if len(msg) > MaxError {
		msg = msg[:MaxError]
	}
	if len(dst) < 4+len(msg) {
		return 0
	}
	le.PutUint32(dst, uint32(len(msg)))
	return 4 + copy(dst[4:], msg)
}

// ReadErrorMessage decodes what ErrorMessage wrote, tolerating garbage: a
// failing plugin's buffer is not trusted, so an implausible length yields a
// note instead of an error.
func ReadErrorMessage(b []byte) string {
	if len(b) < 4 {
		return ""
	}
	n := le.Uint32(b)
	if n > MaxError || int(n) > len(b)-4 {
		return fmt.Sprintf("(unreadable message: length %d)", n)
	}
	return string(b[4 : 4+n])
}

// begin checks string lengths and the destination's capacity and returns
// the total message size.
func begin(dst []byte, msg string, fixed int, slots []strSlot, strs []string) (int, error) {
	n := fixed
	for i, s := range slots {
		if len(strs[i]) > s.max {
			return 0, &FieldError{msg, s.name, fmt.Sprintf("%d bytes", len(strs[i])), fmt.Sprintf("at most %d bytes", s.max)}
		}
		n += len(strs[i])
	}
	if n > MaxMessage {
		return 0, &FieldError{msg, "total_size", n, fmt.Sprintf("at most %d", MaxMessage)}
	}
	if len(dst) < n {
		return 0, fmt.Errorf("abi: %s: buffer of %d bytes is too small for %d", msg, len(dst), n)
	}
	return n, nil
}

func putHeader(dst []byte, structSize, total int, kind Kind, op Op) {
	le.PutUint32(dst[0:], uint32(structSize))
	le.PutUint32(dst[4:], uint32(total))
	le.PutUint16(dst[8:], Major)
	le.PutUint16(dst[10:], Minor)
	le.PutUint16(dst[12:], uint16(kind))
	le.PutUint16(dst[14:], uint16(op))
}

func putStrings(dst []byte, off int, slots []strSlot, strs []string) {
	for i, s := range slots {
		n := len(strs[i])
		if n == 0 {
			le.PutUint64(dst[s.at:], 0)
			continue
		}
		le.PutUint32(dst[s.at:], uint32(off))
		le.PutUint32(dst[s.at+4:], uint32(n))
		off += copy(dst[off:], strs[i])
	}
}

// readHeader validates the common header and returns struct_size and op.
func readHeader(b []byte, msg string, kind Kind, minStruct int) (int, uint16, error) {
	if len(b) < HeaderSize {
		return 0, 0, &FieldError{msg, "length", len(b), fmt.Sprintf("at least %d bytes", HeaderSize)}
	}
	if len(b) > MaxMessage {
		return 0, 0, &FieldError{msg, "length", len(b), fmt.Sprintf("at most %d bytes", MaxMessage)}
	}
	ss, total := le.Uint32(b[0:]), le.Uint32(b[4:])
	major, k := le.Uint16(b[8:]), Kind(le.Uint16(b[12:]))
	switch {
	case major != Major:
		return 0, 0, fmt.Errorf("abi: %s: major version %d, this side speaks %d: %w", msg, major, Major, ErrVersion)
	case k != kind:
		return 0, 0, &FieldError{msg, "kind", uint16(k), fmt.Sprintf("%d (%s)", kind, kind)}
	case total != uint32(len(b)):
		return 0, 0, &FieldError{msg, "total_size", total, fmt.Sprintf("the message length %d", len(b))}
	case ss < uint32(minStruct) || ss > total:
		return 0, 0, &FieldError{msg, "struct_size", ss, fmt.Sprintf("between %d and total_size %d", minStruct, total)}
	}
	return int(ss), le.Uint16(b[14:]), nil
}

func getStrings(b []byte, structSize int, msg string, slots []strSlot, out []string) error {
	return decodeStrings(b, structSize, msg, slots, out, false)
}

// decodeStrings reads the string slots; with alias the strings share b's
// memory instead of being copied.
func decodeStrings(b []byte, structSize int, msg string, slots []strSlot, out []string, alias bool) error {
	for i, s := range slots {
		off, n := le.Uint32(b[s.at:]), le.Uint32(b[s.at+4:])
		if n == 0 {
			continue
		}
		if n > uint32(s.max) {
			return &FieldError{msg, s.name + ".len", n, fmt.Sprintf("at most %d", s.max)}
		}
		if off < uint32(structSize) || uint64(off)+uint64(n) > uint64(len(b)) {
			return &FieldError{msg, s.name + ".offset", off, fmt.Sprintf("a range of %d bytes within [%d, %d)", n, structSize, len(b))}
		}
		var str string
		if alias {
			str = unsafe.String(&b[off], int(n))
		} else {
			str = string(b[off : off+n])
		}
		if s.utf8 && !utf8.ValidString(str) {
			return &FieldError{msg, s.name, fmt.Sprintf("%q", str), "valid UTF-8"}
		}
		out[i] = str
	}
	return nil
}

func checkText(msg string, slots []strSlot, strs ...string) error {
	for i, s := range slots {
		if len(strs[i]) > s.max {
			return &FieldError{msg, s.name, fmt.Sprintf("%d bytes", len(strs[i])), fmt.Sprintf("at most %d bytes", s.max)}
		}
		if !utf8.ValidString(strs[i]) {
			return &FieldError{msg, s.name, fmt.Sprintf("%q", strs[i]), "valid UTF-8"}
		}
	}
	return nil
}

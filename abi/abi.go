// Package abi is the wire contract between the Lineage host and its
// WebAssembly policy plugins: versions, operations, verdicts, scopes, limits
// and the byte-exact binary layouts of every request and response, as
// specified in SPEC.md next to this file.
//
// The package imports only the standard library so that the host, the Go
// SDK and tools in other languages' build chains can all depend on it.
// Encoding and decoding never run guest code and never trust a length or an
// offset they did not check.
package abi

import (
	"errors"
	"fmt"
)

// ABI version implemented by this package. A plugin and the host must agree
// on the major version; minor versions only append trailing fields, which an
// older reader skips by honouring struct_size.
const (
	Major uint16 = 1
	Minor uint16 = 0
)

// Limits every encoder enforces and every decoder checks. They are part of
// the contract: a plugin may rely on requests staying within them and the
// host rejects answers that exceed them.
const (
	// MinBufferSize is the smallest I/O buffer a plugin may export; every
	// message and the config bytes must fit in it.
	MinBufferSize = 64 << 10
	// MaxMessage is the largest request or response in bytes.
	MaxMessage = MinBufferSize
	// MaxConfig is the largest config passed to lineage_init.
	MaxConfig = MinBufferSize
	MaxZone   = 64   // zone names: 1..64 bytes of [a-z0-9._-]
	MaxState  = 1024 // opaque per-process plugin state
	MaxObject = 4096 // path, registry key or target executable
	MaxExe    = 4096 // executable path in classify requests
	MaxRule   = 128  // rule identifiers, valid UTF-8
	MaxReason = 1024 // human-readable reasons, valid UTF-8
	MaxError  = 1024 // error messages returned by a failing call
	// MaxTTLMillis bounds how long a scoped answer may be cached: 24 hours.
	MaxTTLMillis = 24 * 60 * 60 * 1000
)

// ErrMalformed is wrapped by every decoding and validation error, so callers
// can tell bad bytes from other failures with errors.Is.
var ErrMalformed = errors.New("malformed message")

// ErrVersion is wrapped by errors about an unsupported ABI version.
var ErrVersion = errors.New("unsupported ABI version")

// FieldError names the message, the field, the offending value and what was
// expected. It wraps ErrMalformed.
type FieldError struct {
	Msg   string // "decide request", "classify response", "metadata", ...
	Field string // field name as written in SPEC.md
	Value any    // the offending value
	Want  string // what was expected
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("abi: %s: field %s: got %v, want %s", e.Msg, e.Field, e.Value, e.Want)
}

func (e *FieldError) Unwrap() error { return ErrMalformed }

// Kind says which call a message belongs to; a response echoes its request's
// kind.
type Kind uint16

const (
	KindClassify Kind = 1
	KindDecide   Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindClassify:
		return "classify"
	case KindDecide:
		return "decide"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// Op is a monitored operation. Values are stable across ABI versions; new
// operations get new numbers.
type Op uint16

const (
	OpInvalid       Op = 0
	OpProcessExec   Op = 1
	OpCodeLoad      Op = 2
	OpFileRead      Op = 3
	OpFileWrite     Op = 4
	OpFileDelete    Op = 5
	OpRegistryRead  Op = 6
	OpRegistryWrite Op = 7
	OpNetConnect    Op = 8
	OpNetBind       Op = 9
	OpNetSend       Op = 10
	OpMemRead       Op = 11
	OpMemWrite      Op = 12
	// opLimit is one past the highest op this version knows.
	opLimit Op = 13
)

var opNames = [opLimit]string{
	"", "process.exec", "code.load", "file.read", "file.write", "file.delete",
	"registry.read", "registry.write", "net.connect", "net.bind", "net.send",
	"mem.read", "mem.write",
}

// Ops lists every valid operation in numeric order.
func Ops() []Op {
	ops := make([]Op, 0, opLimit-1)
	for o := OpProcessExec; o < opLimit; o++ {
		ops = append(ops, o)
	}
	return ops
}

// Valid reports whether o is an operation of this ABI version.
func (o Op) Valid() bool { return o > OpInvalid && o < opLimit }

func (o Op) String() string {
	if o.Valid() {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// ParseOp maps a name such as "file.write" to its Op.
func ParseOp(s string) (Op, error) {
	for o := OpProcessExec; o < opLimit; o++ {
		if opNames[o] == s {
			return o, nil
		}
	}
	return OpInvalid, fmt.Errorf("unknown op %q (want one of process.exec, code.load, file.read, file.write, file.delete, registry.read, registry.write, net.connect, net.bind, net.send, mem.read, mem.write)", s)
}

// Object reports which object fields the op uses: a filesystem path, a
// registry key, a network endpoint or a target process.
func (o Op) Object() ObjectKind {
	switch o {
	case OpProcessExec, OpCodeLoad, OpFileRead, OpFileWrite, OpFileDelete:
		return ObjectPath
	case OpRegistryRead, OpRegistryWrite:
		return ObjectKey
	case OpNetConnect, OpNetBind, OpNetSend:
		return ObjectEndpoint
	case OpMemRead, OpMemWrite:
		return ObjectProcess
	}
	return ObjectNone
}

// ObjectKind groups operations by the kind of object they act on.
type ObjectKind uint8

const (
	ObjectNone ObjectKind = iota
	ObjectPath
	ObjectKey
	ObjectEndpoint
	ObjectProcess
)

// FSKind is the kind of filesystem an object lives on.
type FSKind uint8

const (
	FSLocal     FSKind = 0
	FSNetwork   FSKind = 1
	FSRemovable FSKind = 2
	fsLimit     FSKind = 3
)

var fsNames = [fsLimit]string{"local", "network", "removable"}

func (f FSKind) Valid() bool { return f < fsLimit }

func (f FSKind) String() string {
	if f.Valid() {
		return fsNames[f]
	}
	return fmt.Sprintf("fs(%d)", uint8(f))
}

// ParseFSKind maps "local", "network" or "removable" to its FSKind; the
// empty string means local.
func ParseFSKind(s string) (FSKind, error) {
	if s == "" {
		return FSLocal, nil
	}
	for i, n := range fsNames {
		if n == s {
			return FSKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown filesystem kind %q (want local, network or removable)", s)
}

// Proto is a transport protocol, numbered as in IP.
type Proto uint8

const (
	ProtoNone Proto = 0
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
)

func (p Proto) Valid() bool { return p == ProtoNone || p == ProtoTCP || p == ProtoUDP }

func (p Proto) String() string {
	switch p {
	case ProtoNone:
		return ""
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ParseProto maps "tcp" or "udp" to its Proto.
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp or udp)", s)
}

// Verdict is a plugin's answer to a decide request. The zero value abstains,
// so a plugin that writes nothing never allows anything.
type Verdict uint8

const (
	Abstain      Verdict = 0
	Allow        Verdict = 1
	Deny         Verdict = 2
	verdictLimit Verdict = 3
)

func (v Verdict) Valid() bool { return v < verdictLimit }

func (v Verdict) String() string {
	switch v {
	case Abstain:
		return "abstain"
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// ParseVerdict maps "allow", "deny" or "abstain" to its Verdict.
func ParseVerdict(s string) (Verdict, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	case "abstain":
		return Abstain, nil
	}
	return 0, fmt.Errorf("unknown verdict %q (want allow, deny or abstain)", s)
}

// ScopeSubject says which subjects an answer also holds for.
type ScopeSubject uint8

const (
	// SubjectZoneState: subjects with the same zone and the same plugin state.
	SubjectZoneState ScopeSubject = 0
	// SubjectZone: subjects in the same zone, whatever their state.
	SubjectZone ScopeSubject = 1
	// SubjectAll: every subject, whatever its zone.
	SubjectAll        ScopeSubject = 2
	scopeSubjectLimit ScopeSubject = 3
)

func (s ScopeSubject) Valid() bool { return s < scopeSubjectLimit }

func (s ScopeSubject) String() string {
	switch s {
	case SubjectZoneState:
		return "zone+state"
	case SubjectZone:
		return "zone"
	case SubjectAll:
		return "all-subjects"
	}
	return fmt.Sprintf("subject-scope(%d)", uint8(s))
}

// ScopeObject says which objects of the same op an answer also holds for.
type ScopeObject uint8

const (
	// ObjectExact: only this object (every object field equal).
	ObjectExact ScopeObject = 0
	// ObjectPrefix: every object whose path or key starts with the first
	// PrefixLen bytes of this one.
	ObjectPrefix ScopeObject = 1
	// ObjectPortRange: every endpoint with the same protocol whose port lies
	// in [PortLo, PortHi], whatever its address.
	ObjectPortRange ScopeObject = 2
	// ObjectAny: every object of this op.
	ObjectAny        ScopeObject = 3
	scopeObjectLimit ScopeObject = 4
)

func (s ScopeObject) Valid() bool { return s < scopeObjectLimit }

func (s ScopeObject) String() string {
	switch s {
	case ObjectExact:
		return "exact"
	case ObjectPrefix:
		return "prefix"
	case ObjectPortRange:
		return "port-range"
	case ObjectAny:
		return "any"
	}
	return fmt.Sprintf("object-scope(%d)", uint8(s))
}

// ErrorCode is returned, negated, by a plugin call that fails.
type ErrorCode int32

const (
	ErrCodeMalformed      ErrorCode = 1 // the request did not decode
	ErrCodeVersion        ErrorCode = 2 // the request's ABI major is not supported
	ErrCodeConfig         ErrorCode = 3 // lineage_init rejected the config
	ErrCodeInternal       ErrorCode = 4 // the plugin failed for its own reasons
	ErrCodeNotInitialized ErrorCode = 5 // called before a successful lineage_init
	ErrCodeUnsupported    ErrorCode = 6 // this entry point is not implemented
)

func (c ErrorCode) String() string {
	switch c {
	case ErrCodeMalformed:
		return "malformed request"
	case ErrCodeVersion:
		return "unsupported ABI version"
	case ErrCodeConfig:
		return "invalid config"
	case ErrCodeInternal:
		return "internal plugin error"
	case ErrCodeNotInitialized:
		return "not initialized"
	case ErrCodeUnsupported:
		return "unsupported entry point"
	}
	return fmt.Sprintf("error code %d", int32(c))
}

// Export names a plugin module must (or may) provide.
const (
	ExportMemory     = "memory"
	ExportBuffer     = "lineage_buffer"
	ExportBufferSize = "lineage_buffer_size"
	ExportInit       = "lineage_init"
	ExportClassify   = "lineage_classify"
	ExportDecide     = "lineage_decide"
	// ExportInitialize is the WASI reactor initializer, run once per instance
	// when present (Go's -buildmode=c-shared emits it).
	ExportInitialize = "_initialize"
)

// ValidZone reports whether z is a well-formed zone name.
func ValidZone(z string) bool {
	if len(z) == 0 || len(z) > MaxZone {
		return false
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

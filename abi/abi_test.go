package abi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseOp(t *testing.T) {
	names := []string{"process.exec", "code.load", "file.read", "file.write", "file.delete",
		"registry.read", "registry.write", "net.connect", "net.bind", "net.send", "mem.read", "mem.write"}
	if got := Ops(); len(got) != len(names) {
		t.Fatalf("Ops() has %d ops, want %d", len(got), len(names))
	}
	for i, name := range names {
		want := Op(i + 1) // numbers are part of the wire format
		t.Run(name, func(t *testing.T) {
			got, err := ParseOp(name)
			if err != nil || got != want {
				t.Fatalf("ParseOp(%q) = %d, %v; want %d", name, got, err, want)
			}
			if got.String() != name || !got.Valid() || Ops()[i] != want {
				t.Errorf("op %d: String %q, Valid %v, Ops()[%d] %d", want, got, got.Valid(), i, Ops()[i])
			}
		})
	}
	for _, bad := range []string{"", "File.Read", "file.read ", "file", "op(3)", "3", "mem"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			if o, err := ParseOp(bad); err == nil || o != OpInvalid {
				t.Fatalf("ParseOp(%q) = %v, %v; want an error", bad, o, err)
			}
		})
	}
	for _, o := range []Op{OpInvalid, opLimit, 0xffff} {
		if o.Valid() || o.String() != fmt.Sprintf("op(%d)", uint16(o)) {
			t.Errorf("Op(%d): Valid %v, String %q", uint16(o), o.Valid(), o)
		}
	}
}

func TestParseFSKind(t *testing.T) {
	tests := []struct {
		in   string
		want FSKind
		ok   bool
	}{
		{"", FSLocal, true},
		{"local", FSLocal, true},
		{"network", FSNetwork, true},
		{"removable", FSRemovable, true},
		{"Local", 0, false},
		{"nfs", 0, false},
		{"fs(3)", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFSKind(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseFSKind(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok && tt.in != "" && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got, tt.in)
			}
		})
	}
	if FSKind(3).Valid() || FSKind(3).String() != "fs(3)" {
		t.Errorf("FSKind(3): Valid %v, String %q", FSKind(3).Valid(), FSKind(3))
	}
}

func TestParseProto(t *testing.T) {
	tests := []struct {
		in   string
		want Proto
		ok   bool
	}{
		{"tcp", ProtoTCP, true},
		{"udp", ProtoUDP, true},
		{"", 0, false}, // only net ops carry a protocol, and they need one
		{"TCP", 0, false},
		{"icmp", 0, false},
		{"6", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseProto(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseProto(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok && got.String() != tt.in {
				t.Errorf("String() = %q", got)
			}
		})
	}
	for p := 0; p < 256; p++ {
		want := p == 0 || p == 6 || p == 17
		if Proto(p).Valid() != want {
			t.Errorf("Proto(%d).Valid() = %v", p, !want)
		}
	}
	if ProtoNone.String() != "" || Proto(1).String() != "proto(1)" {
		t.Errorf("String: none %q, 1 %q", ProtoNone, Proto(1))
	}
}

func TestParseVerdict(t *testing.T) {
	tests := []struct {
		in   string
		want Verdict
		ok   bool
	}{
		{"allow", Allow, true},
		{"deny", Deny, true},
		{"abstain", Abstain, true},
		{"", 0, false},
		{"Allow", 0, false},
		{"block", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVerdict(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseVerdict(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if !tt.ok && !strings.Contains(err.Error(), "abstain") {
				t.Errorf("error %q does not list every verdict", err)
			}
			if tt.ok && got.String() != tt.in {
				t.Errorf("String() = %q", got)
			}
		})
	}
	if Verdict(3).Valid() || Verdict(3).String() != "verdict(3)" {
		t.Errorf("Verdict(3): Valid %v, String %q", Verdict(3).Valid(), Verdict(3))
	}
}

func TestEnumStrings(t *testing.T) {
	tests := []struct {
		v    fmt.Stringer
		want string
	}{
		{KindClassify, "classify"},
		{KindDecide, "decide"},
		{Kind(3), "kind(3)"},
		{SubjectZoneState, "zone+state"},
		{SubjectZone, "zone"},
		{SubjectAll, "all-subjects"},
		{ScopeSubject(3), "subject-scope(3)"},
		{ObjectExact, "exact"},
		{ObjectPrefix, "prefix"},
		{ObjectPortRange, "port-range"},
		{ObjectAny, "any"},
		{ScopeObject(4), "object-scope(4)"},
		{ErrCodeMalformed, "malformed request"},
		{ErrCodeVersion, "unsupported ABI version"},
		{ErrCodeConfig, "invalid config"},
		{ErrCodeInternal, "internal plugin error"},
		{ErrCodeNotInitialized, "not initialized"},
		{ErrCodeUnsupported, "unsupported entry point"},
		{ErrorCode(7), "error code 7"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.v.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	// Error codes are wire values.
	for i, c := range []ErrorCode{ErrCodeMalformed, ErrCodeVersion, ErrCodeConfig, ErrCodeInternal, ErrCodeNotInitialized, ErrCodeUnsupported} {
		if int(c) != i+1 {
			t.Errorf("%v = %d, want %d", c, c, i+1)
		}
	}
}

func TestValidZone(t *testing.T) {
	tests := []struct {
		zone string
		want bool
	}{
		{"system", true},
		{"a", true},
		{"office.mail-2_x", true},
		{"0", true},
		{strings.Repeat("z", MaxZone), true},
		{strings.Repeat("z", MaxZone+1), false},
		{"", false},
		{"Office", false},
		{"user zone", false},
		{"zone/1", false},
		{"zoné", false},
		{"zone\x00", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.zone), func(t *testing.T) {
			if got := ValidZone(tt.zone); got != tt.want {
				t.Errorf("ValidZone(%q) = %v, want %v", tt.zone, got, tt.want)
			}
		})
	}
}

func TestOpObject(t *testing.T) {
	tests := []struct {
		op   Op
		want ObjectKind
	}{
		{OpInvalid, ObjectNone},
		{OpProcessExec, ObjectPath},
		{OpCodeLoad, ObjectPath},
		{OpFileRead, ObjectPath},
		{OpFileWrite, ObjectPath},
		{OpFileDelete, ObjectPath},
		{OpRegistryRead, ObjectKey},
		{OpRegistryWrite, ObjectKey},
		{OpNetConnect, ObjectEndpoint},
		{OpNetBind, ObjectEndpoint},
		{OpNetSend, ObjectEndpoint},
		{OpMemRead, ObjectProcess},
		{OpMemWrite, ObjectProcess},
		{opLimit, ObjectNone},
	}
	for _, tt := range tests {
		t.Run(tt.op.String(), func(t *testing.T) {
			if got := tt.op.Object(); got != tt.want {
				t.Errorf("Object() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFieldError(t *testing.T) {
	err := error(&FieldError{Msg: "decide request", Field: "zone.len", Value: 65, Want: "at most 64"})
	if got, want := err.Error(), "abi: decide request: field zone.len: got 65, want at most 64"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrVersion) {
		t.Errorf("FieldError must wrap ErrMalformed only")
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		dst  int
		n    int    // bytes ErrorMessage writes
		want string // what ReadErrorMessage reads back
	}{
		{"plain", "config: key \"x\" unknown", 64, 4 + 23, "config: key \"x\" unknown"},
		{"empty", "", 4, 4, ""},
		{"exactly fits", "abcd", 8, 8, "abcd"},
		{"too small dst", "abcd", 7, 0, ""},
		{"truncated to MaxError", strings.Repeat("e", MaxError+10), 2 * MaxError, 4 + MaxError, strings.Repeat("e", MaxError)},
		{"non-UTF-8 kept", "bad \xff", 16, 9, "bad \xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.dst)
			if n := ErrorMessage(dst, tt.msg); n != tt.n {
				t.Fatalf("ErrorMessage wrote %d bytes, want %d", n, tt.n)
			}
			if tt.n == 0 {
				if !bytes.Equal(dst, make([]byte, tt.dst)) {
					t.Errorf("ErrorMessage wrote into a buffer too small for it: %x", dst)
				}
				return
			}
			if got := ReadErrorMessage(dst); got != tt.want {
				t.Errorf("ReadErrorMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadErrorMessageGarbage(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"nil", nil, ""},
		{"3 bytes", []byte{1, 0, 0}, ""},
		{"length 0", []byte{0, 0, 0, 0, 'x'}, ""},
		{"length past the end", []byte{5, 0, 0, 0, 'a', 'b'}, "(unreadable message: length 5)"},
		{"length over MaxError", append(le.AppendUint32(nil, MaxError+1), make([]byte, 2*MaxError)...), fmt.Sprintf("(unreadable message: length %d)", MaxError+1)},
		{"length 0xffffffff", []byte{0xff, 0xff, 0xff, 0xff, 'a'}, "(unreadable message: length 4294967295)"},
		{"trailing bytes ignored", []byte{2, 0, 0, 0, 'o', 'k', 'x', 'x'}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReadErrorMessage(tt.b); got != tt.want {
				t.Errorf("ReadErrorMessage(%x) = %q, want %q", tt.b, got, tt.want)
			}
		})
	}
}

// unhex decodes hex written for people: whitespace is ignored and a #
// starts a comment that runs to the end of the line.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("unhex: %v", err)
	}
	return b
}

// TestLayoutByHand checks the encoders against messages assembled by hand
// from the tables in SPEC.md, independently of the encoders' code; the
// golden vectors then pin the rest.
func TestLayoutByHand(t *testing.T) {
	addr := netip.MustParseAddr("::ffff:1.2.3.4").As16()
	tests := []struct {
		name string
		enc  func() ([]byte, error)
		want string
	}{
		{"decide request", func() ([]byte, error) {
			r := DecideRequest{Op: OpNetConnect, Zone: "z1", State: "\x00\x01", FS: FSNetwork, Proto: ProtoTCP, Port: 443, Addr: addr, TargetZone: "tz"}
			return encodeSized(r.Size(), r.Encode)
		}, `
			48000000 4e000000          # struct_size 72, total_size 78
			0100 0000 0200 0800        # major 1, minor 0, kind 2 (decide), op 8 (net.connect)
			01 06 bb01                 # fs 1 (network), proto 6 (tcp), port 443
			00000000000000000000ffff01020304 # addr ::ffff:1.2.3.4
			00000000                   # reserved
			48000000 02000000          # zone: offset 72, length 2
			4a000000 02000000          # state: offset 74, length 2
			00000000 00000000          # object: empty
			4c000000 02000000          # target_zone: offset 76, length 2
			7a31 0001 747a             # "z1", 00 01, "tz"
		`},
		{"classify request", func() ([]byte, error) {
			r := ClassifyRequest{Flags: FlagInPlace | FlagCreatorUnknown, Exe: "/x", FS: FSRemovable, CreatorExe: "/y"}
			return encodeSized(r.Size(), r.Encode)
		}, `
			38000000 3c000000          # struct_size 56, total_size 60
			0100 0000 0100 0100        # 1.0, kind 1 (classify), op 1 (process.exec)
			03000000                   # flags: in place | creator unknown
			02 000000                  # fs 2 (removable), reserved
			38000000 02000000          # exe: offset 56, length 2
			00000000 00000000          # creator_zone: empty
			00000000 00000000          # creator_state: empty
			3a000000 02000000          # creator_exe: offset 58, length 2
			2f78 2f79                  # "/x" "/y"
		`},
		{"decide response", func() ([]byte, error) {
			r := DecideResponse{Verdict: Deny, Scope: Scope{Subject: SubjectAll, Object: ObjectPortRange, PortLo: 6660, PortHi: 6669, TTLMillis: 86400000}, Rule: "r", Reason: "é"}
			return encodeSized(r.Size(), func(b []byte) (int, error) { return r.Encode(b, OpNetConnect) })
		}, `
			30000000 33000000          # struct_size 48, total_size 51
			0100 0000 0200 0800        # 1.0, kind 2, op 8 (echoes the request)
			02 02 02 00                # verdict deny, subject all, object port range, reserved
			00000000                   # prefix_len 0
			041a 0d1a                  # port_lo 6660, port_hi 6669
			005c2605                   # ttl_ms 86400000
			30000000 01000000          # rule: offset 48, length 1
			31000000 02000000          # reason: offset 49, length 2
			72 c3a9                    # "r" "é"
		`},
		{"classify response", func() ([]byte, error) {
			r := ClassifyResponse{Classified: true, Flags: FlagInherited, Zone: "web", State: "s"}
			return encodeSized(r.Size(), r.Encode)
		}, `
			38000000 3c000000          # struct_size 56, total_size 60
			0100 0000 0100 0100        # 1.0, kind 1, op 1
			01 01 0000 00000000        # classified, flags inherited, reserved
			38000000 03000000          # zone: offset 56, length 3
			3b000000 01000000          # state: offset 59, length 1
			00000000 00000000          # rule: empty
			00000000 00000000          # reason: empty
			776562 73                  # "web" "s"
		`},
		{"metadata", func() ([]byte, error) {
			m := Metadata{Major: 1, Minor: 0, Entry: EntryClassify | EntryDecide, Ops: OpsMask(OpFileRead, OpMemWrite), Name: "p", Version: "1"}
			return m.Encode()
		}, `
			28000000                   # struct_size 40 (no total_size: the section length bounds it)
			0100 0000                  # major 1 at offset 4, minor 0 at offset 6
			03000000                   # entry_points: classify | decide
			08100000                   # ops: bits 3 (file.read) and 12 (mem.write)
			28000000 01000000          # name: offset 40, length 1
			29000000 01000000          # version: offset 41, length 1
			00000000 00000000          # vendor: empty
			70 31                      # "p" "1"
		`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.enc()
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	ok := DecideRequest{Op: OpFileRead, Zone: "z"}
	tests := []struct {
		name  string
		enc   func(dst []byte) (int, error)
		field string // "" for an error that is not a FieldError
	}{
		{"decide request op 0", func(b []byte) (int, error) { r := ok; r.Op = 0; return r.Encode(b) }, "op"},
		{"decide request op 13", func(b []byte) (int, error) { r := ok; r.Op = 13; return r.Encode(b) }, "op"},
		{"decide request fs", func(b []byte) (int, error) { r := ok; r.FS = 3; return r.Encode(b) }, "fs"},
		{"decide request proto", func(b []byte) (int, error) { r := ok; r.Proto = 1; return r.Encode(b) }, "proto"},
		{"decide request zone", func(b []byte) (int, error) { r := ok; r.Zone = long(MaxZone + 1); return r.Encode(b) }, "zone"},
		{"decide request state", func(b []byte) (int, error) { r := ok; r.State = long(MaxState + 1); return r.Encode(b) }, "state"},
		{"decide request object", func(b []byte) (int, error) { r := ok; r.Object = long(MaxObject + 1); return r.Encode(b) }, "object"},
		{"decide request target_zone", func(b []byte) (int, error) { r := ok; r.TargetZone = long(MaxZone + 1); return r.Encode(b) }, "target_zone"},
		{"decide request small buffer", func(b []byte) (int, error) { return ok.Encode(b[:DecideRequestSize]) }, ""},
		{"classify request flags", func(b []byte) (int, error) { r := ClassifyRequest{Flags: 4}; return r.Encode(b) }, "flags"},
		{"classify request fs", func(b []byte) (int, error) { r := ClassifyRequest{FS: 9}; return r.Encode(b) }, "fs"},
		{"classify request exe", func(b []byte) (int, error) { r := ClassifyRequest{Exe: long(MaxExe + 1)}; return r.Encode(b) }, "exe"},
		{"classify request creator_state", func(b []byte) (int, error) {
			r := ClassifyRequest{CreatorState: long(MaxState + 1)}
			return r.Encode(b)
		}, "creator_state"},
		{"classify request small buffer", func(b []byte) (int, error) { r := ClassifyRequest{Exe: "/x"}; return r.Encode(b[:57]) }, ""},
		{"decide response verdict", func(b []byte) (int, error) { r := DecideResponse{Verdict: 3}; return r.Encode(b, OpFileRead) }, "verdict"},
		{"decide response rule length", func(b []byte) (int, error) {
			r := DecideResponse{Rule: long(MaxRule + 1)}
			return r.Encode(b, OpFileRead)
		}, "rule"},
		{"decide response reason length", func(b []byte) (int, error) {
			r := DecideResponse{Reason: long(MaxReason + 1)}
			return r.Encode(b, OpFileRead)
		}, "reason"},
		{"decide response reason UTF-8", func(b []byte) (int, error) { r := DecideResponse{Reason: "\xff"}; return r.Encode(b, OpFileRead) }, "reason"},
		{"decide response small buffer", func(b []byte) (int, error) { r := DecideResponse{Rule: "r"}; return r.Encode(b[:48], OpFileRead) }, ""},
		{"classify response zone", func(b []byte) (int, error) { r := ClassifyResponse{Classified: true, Zone: "A"}; return r.Encode(b) }, "zone"},
		{"classify response abstain with zone", func(b []byte) (int, error) { r := ClassifyResponse{Zone: "a"}; return r.Encode(b) }, "zone"},
		{"classify response abstain with flags", func(b []byte) (int, error) { r := ClassifyResponse{Flags: FlagInherited}; return r.Encode(b) }, "flags"},
		{"classify response unknown flags", func(b []byte) (int, error) {
			r := ClassifyResponse{Classified: true, Zone: "a", Flags: 2}
			return r.Encode(b)
		}, "flags"},
		{"classify response state length", func(b []byte) (int, error) {
			r := ClassifyResponse{Classified: true, Zone: "a", State: long(MaxState + 1)}
			return r.Encode(b)
		}, "state"},
		{"classify response rule UTF-8", func(b []byte) (int, error) {
			r := ClassifyResponse{Classified: true, Zone: "a", Rule: "\xc0\x80"}
			return r.Encode(b)
		}, "rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, MaxMessage)
			for i := range buf {
				buf[i] = 0x5a
			}
			n, err := tt.enc(buf)
			if err == nil {
				t.Fatalf("encoded %d bytes without error", n)
			}
			if n != 0 {
				t.Errorf("n = %d with an error", n)
			}
			var fe *FieldError
			isField := errors.As(err, &fe)
			switch {
			case tt.field == "" && isField:
				t.Errorf("error %q is a FieldError; want a plain error", err)
			case tt.field != "" && (!isField || fe.Field != tt.field):
				t.Errorf("error %q, want a FieldError for %s", err, tt.field)
			}
			// A failed Encode leaves the destination untouched, so a host
			// never hands a half-written request to a plugin.
			if i := bytes.IndexFunc(buf, func(r rune) bool { return r != 0x5a }); i >= 0 {
				t.Errorf("failed Encode wrote byte %d", i)
			}
		})
	}
}

func TestCheckScope(t *testing.T) {
	file := &DecideRequest{Op: OpFileWrite, Zone: "z", Object: "/srv/critical/db.conf"}
	key := &DecideRequest{Op: OpRegistryWrite, Zone: "z", Object: `HKLM\SOFTWARE`}
	conn := &DecideRequest{Op: OpNetConnect, Zone: "z", Proto: ProtoTCP, Port: 443}
	mem := &DecideRequest{Op: OpMemRead, Zone: "z", Object: "/usr/bin/x", TargetZone: "y"}
	tests := []struct {
		name  string
		req   *DecideRequest
		scope Scope
		field string // "" when the scope holds the request
	}{
		{"exact file", file, Scope{}, ""},
		{"any file", file, Scope{Object: ObjectAny}, ""},
		{"prefix of the whole object", file, Scope{Object: ObjectPrefix, PrefixLen: uint32(len(file.Object))}, ""},
		{"prefix of the folder", file, Scope{Object: ObjectPrefix, PrefixLen: 14}, ""},
		{"prefix longer than the object", file, Scope{Object: ObjectPrefix, PrefixLen: uint32(len(file.Object) + 1)}, "prefix_len"},
		{"prefix of a registry key", key, Scope{Object: ObjectPrefix, PrefixLen: 5}, ""},
		{"prefix inside a key name", key, Scope{Object: ObjectPrefix, PrefixLen: 4}, "prefix_len"},
		{"prefix inside a path component", file, Scope{Object: ObjectPrefix, PrefixLen: 8}, "prefix_len"},
		{"prefix on a net op", conn, Scope{Object: ObjectPrefix, PrefixLen: 1}, "scope_object"},
		{"prefix on a mem op", mem, Scope{Object: ObjectPrefix, PrefixLen: 1}, "scope_object"},
		{"port range holding the port", conn, Scope{Object: ObjectPortRange, PortLo: 443, PortHi: 443}, ""},
		{"port range 0..65535", conn, Scope{Object: ObjectPortRange, PortLo: 0, PortHi: 65535}, ""},
		{"port range below the port", conn, Scope{Object: ObjectPortRange, PortLo: 1, PortHi: 442}, "port_lo"},
		{"port range above the port", conn, Scope{Object: ObjectPortRange, PortLo: 444, PortHi: 500}, "port_lo"},
		{"port range on a file op", file, Scope{Object: ObjectPortRange, PortLo: 0, PortHi: 65535}, "scope_object"},
		{"exact mem", mem, Scope{Subject: SubjectAll}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DecideResponse{Verdict: Deny, Scope: tt.scope}
			if err := r.Validate(); err != nil {
				t.Fatalf("test scope is invalid on its own: %v", err)
			}
			err := r.CheckScope(tt.req)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("CheckScope: %v", err)
				}
				return
			}
			checkFieldError(t, err, tt.field)
		})
	}
}

// checkFieldError checks that err is a *FieldError naming field. Unlike
// checkDecodeError it gives "version" no special meaning, so it also checks
// the metadata field of that name.
func checkFieldError(t *testing.T, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, ErrMalformed) {
		t.Errorf("error %v (%T): want a *FieldError for field %s", err, err, field)
	}
}

func TestDecodeCopiesStrings(t *testing.T) {
	r := DecideRequest{Op: OpFileRead, Zone: "zone", State: "state", Object: "/object", TargetZone: "t"}
	buf := make([]byte, MinBufferSize)
	n, err := r.Encode(buf)
	if err != nil {
		t.Fatal(err)
	}
	var got DecideRequest
	if err := got.Decode(buf[:n]); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = '!' // the next request overwrites the buffer
	}
	if got != r {
		t.Errorf("decoded strings alias the buffer: %+v", got)
	}
}

func TestDecodeTooLong(t *testing.T) {
	r := DecideRequest{Op: OpFileRead, Zone: "z"}
	b := make([]byte, MaxMessage+1)
	n, err := r.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	var got DecideRequest
	for _, size := range []int{MaxMessage, MaxMessage + 1} {
		// Strings may sit anywhere after the fixed part, so a message of
		// MaxMessage bytes is valid, and one byte more is not, whatever
		// total_size says.
		le.PutUint32(b[4:], uint32(size))
		err := got.Decode(b[:size])
		if size == MaxMessage && (err != nil || got != r) {
			t.Fatalf("%d-byte message: %+v, %v", size, got, err)
		}
		if size > MaxMessage {
			checkFieldError(t, err, "length")
		}
	}
	le.PutUint32(b[4:], uint32(n))
	if err := got.Decode(b[:n]); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeVersionError(t *testing.T) {
	r := ClassifyRequest{Exe: "/x"}
	b, err := encodeSized(r.Size(), r.Encode)
	if err != nil {
		t.Fatal(err)
	}
	le.PutUint16(b[8:], 3)
	le.PutUint16(b[12:], 99) // a different major may change everything else
	err = r.Decode(b)
	checkDecodeError(t, err, "version")
	if !strings.Contains(err.Error(), "3") || !strings.Contains(err.Error(), "1") {
		t.Errorf("error %q does not name both majors", err)
	}
}

func TestMetadataValidate(t *testing.T) {
	ok := Metadata{Major: 1, Entry: EntryClassify | EntryDecide, Ops: AllOps, Name: "zones", Version: "1.0.0", Vendor: "Lineage"}
	tests := []struct {
		name  string
		edit  func(m *Metadata)
		field string
	}{
		{"ok", func(m *Metadata) {}, ""},
		{"classify only without ops", func(m *Metadata) { m.Entry, m.Ops = EntryClassify, 0 }, ""},
		{"decide one op", func(m *Metadata) { m.Entry, m.Ops = EntryDecide, OpsMask(OpNetSend) }, ""},
		{"empty vendor", func(m *Metadata) { m.Vendor = "" }, ""},
		{"longest strings", func(m *Metadata) {
			m.Name, m.Version, m.Vendor = strings.Repeat("n", MaxName), strings.Repeat("v", MaxVersion), strings.Repeat("w", MaxVendor)
		}, ""},
		{"no entry points", func(m *Metadata) { m.Entry = 0 }, "entry_points"},
		{"unknown entry point", func(m *Metadata) { m.Entry = 4 }, "entry_points"},
		{"ops bit 0", func(m *Metadata) { m.Ops |= 1 }, "ops"},
		{"ops bit 13", func(m *Metadata) { m.Ops |= 1 << 13 }, "ops"},
		{"decide without ops", func(m *Metadata) { m.Ops = 0 }, "ops"},
		{"empty name", func(m *Metadata) { m.Name = "" }, "name"},
		{"name upper case", func(m *Metadata) { m.Name = "Zones" }, "name"},
		{"name too long", func(m *Metadata) { m.Name = strings.Repeat("n", MaxName+1) }, "name"},
		{"empty version", func(m *Metadata) { m.Version = "" }, "version"},
		{"version too long", func(m *Metadata) { m.Version = strings.Repeat("v", MaxVersion+1) }, "version"},
		{"version not UTF-8", func(m *Metadata) { m.Version = "1.\xff" }, "version"},
		{"vendor too long", func(m *Metadata) { m.Vendor = strings.Repeat("w", MaxVendor+1) }, "vendor"},
		{"vendor not UTF-8", func(m *Metadata) { m.Vendor = "\xe2\x82" }, "vendor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			err := m.Validate()
			enc, encErr := m.Encode()
			if tt.field == "" {
				if err != nil || encErr != nil {
					t.Fatalf("Validate: %v, Encode: %v", err, encErr)
				}
				got, err := DecodeMetadata(enc)
				if err != nil || got != m {
					t.Fatalf("DecodeMetadata(Encode(m)) = %+v, %v; want %+v", got, err, m)
				}
				return
			}
			checkFieldError(t, err, tt.field)
			if encErr == nil || enc != nil {
				t.Errorf("Encode accepted invalid metadata")
			}
		})
	}
}

func TestMetadataOps(t *testing.T) {
	if AllOps != 0x1ffe {
		t.Errorf("AllOps = %#x, want 0x1ffe (bits 1..12)", AllOps)
	}
	m := Metadata{Ops: OpsMask(OpFileWrite, OpFileDelete)}
	if m.Ops != 0x30 {
		t.Errorf("OpsMask(file.write, file.delete) = %#x, want 0x30", m.Ops)
	}
	for _, o := range append(Ops(), OpInvalid, opLimit) {
		want := o == OpFileWrite || o == OpFileDelete
		if m.Handles(o) != want {
			t.Errorf("Handles(%v) = %v", o, !want)
		}
	}
	if (&Metadata{Ops: 0xffffffff}).Handles(OpInvalid) {
		t.Errorf("Handles(op 0) with every bit set")
	}
}

// Minimal module pieces: a type section with one func type () -> ().
var typeSection = []byte{1, 4, 1, 0x60, 0, 0}

func TestReadMetadata(t *testing.T) {
	m := Metadata{Major: 1, Minor: 0, Entry: EntryDecide, Ops: OpsMask(OpFileWrite), Name: "example", Version: "1.0.0"}
	body, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	v2 := append([]byte(nil), body...)
	le.PutUint16(v2[4:], 2)
	le.PutUint16(v2[6:], 5)
	tests := []struct {
		name    string
		wasm    []byte
		wantErr error  // nil: want m
		errText string // substring of the error
	}{
		{"section alone", moduleWith(customSection(MetadataSection, body)), nil, ""},
		{"after other sections", moduleWith(typeSection, customSection("name", []byte{0}), customSection(MetadataSection, body)), nil, ""},
		{"before other sections", moduleWith(customSection(MetadataSection, body), typeSection), nil, ""},
		{"5-byte LEB128 section size", moduleWith(append([]byte{0, 0x80 | byte(len(MetadataSection)+1+len(body)), 0x80, 0x80, 0x80, 0}, customSection(MetadataSection, body)[2:]...)), nil, ""},
		{"no section", moduleWith(typeSection), ErrNoMetadata, ""},
		{"header only", moduleWith(), ErrNoMetadata, ""},
		{"similar name", moduleWith(customSection("lineage.plugin2", body), customSection("Lineage.plugin", body)), ErrNoMetadata, ""},
		{"two sections", moduleWith(customSection(MetadataSection, body), typeSection, customSection(MetadataSection, body)), ErrMalformed, "2 lineage.plugin custom sections"},
		{"truncated section", moduleWith(customSection(MetadataSection, body))[:8+2+len(MetadataSection)+10], ErrMalformed, "runs past the end"},
		{"truncated section size", append(moduleWith(), 0, 0x80), ErrMalformed, "truncated LEB128"},
		{"section size over 32 bits", append(moduleWith(), 0, 0xff, 0xff, 0xff, 0xff, 0x1f), ErrMalformed, "overflows"},
		{"name past the section", moduleWith([]byte{0, 2, 5, 'l'}), ErrMalformed, "name of 5 bytes"},
		{"metadata body invalid", moduleWith(customSection(MetadataSection, body[:20])), ErrMalformed, "struct_size"},
		{"wrong major", moduleWith(customSection(MetadataSection, v2)), ErrVersion, "plugin speaks ABI 2.5, this host speaks 1.0"},
		{"not wasm", []byte("\x7fELF\x02\x01\x01\x00"), ErrMalformed, "magic"},
		{"short", []byte("\x00asm"), ErrMalformed, "magic"},
		{"wasm version 2", []byte("\x00asm\x02\x00\x00\x00"), ErrMalformed, "version"},
		{"empty", nil, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wasm := tt.wasm[:len(tt.wasm):len(tt.wasm)]
			got, err := ReadMetadata(wasm)
			if tt.wantErr == nil {
				if err != nil || got != m {
					t.Fatalf("ReadMetadata = %+v, %v; want %+v", got, err, m)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadMetadata error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not contain %q", err, tt.errText)
			}
		})
	}
}

func TestAppendMetadata(t *testing.T) {
	m1 := Metadata{Major: 1, Entry: EntryClassify, Name: "one", Version: "1"}
	m2 := Metadata{Major: 1, Entry: EntryDecide, Ops: AllOps, Name: "two", Version: "2.0.0", Vendor: "V"}
	name := customSection("name", []byte{0, 1, 'x'})
	plain := moduleWith(typeSection, name)
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"plain module", plain},
		{"header only", moduleWith()},
		{"old section first", moduleWith(customSection(MetadataSection, []byte("stale")), typeSection, name)},
		{"old section in the middle", moduleWith(typeSection, customSection(MetadataSection, []byte("stale")), name)},
		{"two old sections", moduleWith(customSection(MetadataSection, nil), typeSection, name, customSection(MetadataSection, nil))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte(nil), tt.in...)
			out, err := AppendMetadata(in, m2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("AppendMetadata modified its input")
			}
			if got, err := ReadMetadata(out); err != nil || got != m2 {
				t.Fatalf("ReadMetadata = %+v, %v", got, err)
			}
			// Every other section survives, in order, byte for byte.
			if want := stripMetadata(t, tt.in); !bytes.Equal(stripMetadata(t, out), want) {
				t.Errorf("other sections changed:\n got  %x\n want %x", stripMetadata(t, out), want)
			}
			// The section goes last, so a reader that stops early still
			// sees the code sections intact.
			body, _ := m2.Encode()
			if !bytes.HasSuffix(out, customSection(MetadataSection, body)) {
				t.Errorf("metadata is not the last section")
			}
			again, err := AppendMetadata(out, m2)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("not idempotent: %v", err)
			}
		})
	}
	t.Run("replace", func(t *testing.T) {
		a, err := AppendMetadata(plain, m1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := AppendMetadata(a, m2)
		if err != nil {
			t.Fatal(err)
		}
		direct, _ := AppendMetadata(plain, m2)
		if !bytes.Equal(b, direct) {
			t.Errorf("replacing m1 by m2 differs from annotating with m2 directly")
		}
	})
	for _, tt := range []struct {
		name string
		in   []byte
		m    Metadata
		want error
	}{
		{"nil module", nil, m1, ErrMalformed},
		{"4 bytes", []byte("\x00asm"), m1, ErrMalformed},
		{"7 bytes", []byte("\x00asm\x01\x00\x00"), m1, ErrMalformed},
		{"truncated section", append(moduleWith(), 1, 9, 0), m1, ErrMalformed},
		{"invalid metadata", plain, Metadata{Major: 1, Name: "x", Version: "1"}, ErrMalformed},
	} {
		t.Run("error/"+tt.name, func(t *testing.T) {
			in := tt.in[:len(tt.in):len(tt.in)]
			out, err := AppendMetadata(in, tt.m)
			if !errors.Is(err, tt.want) || out != nil {
				t.Fatalf("AppendMetadata = %d bytes, %v; want %v", len(out), err, tt.want)
			}
		})
	}
}

// stripMetadata returns wasm without its lineage.plugin sections.
func stripMetadata(t *testing.T, wasm []byte) []byte {
	t.Helper()
	out := append([]byte(nil), wasm[:8]...)
	off := 8
	for off < len(wasm) {
		size, k, err := uleb32(wasm[off+1:])
		if err != nil {
			t.Fatal(err)
		}
		end := off + 1 + k + int(size)
		if wasm[off] == 0 {
			if name, _, _ := sectionName(wasm[off+1+k : end]); name == MetadataSection {
				off = end
				continue
			}
		}
		out = append(out, wasm[off:end]...)
		off = end
	}
	return out
}

// TestEncodeDoesNotAllocate holds the host's hot path to zero allocations:
// it encodes every request straight into a plugin's buffer.
func TestEncodeDoesNotAllocate(t *testing.T) {
	buf := make([]byte, MinBufferSize)
	dreq := DecideRequest{Op: OpFileWrite, Zone: "office", State: "mail", Object: "/srv/critical/db.conf"}
	creq := ClassifyRequest{Exe: "/usr/bin/bash", CreatorZone: "user", CreatorExe: "/usr/bin/sh"}
	dresp := DecideResponse{Verdict: Deny, Scope: Scope{Object: ObjectPrefix, PrefixLen: 5, TTLMillis: 1000}, Rule: "r", Reason: "because"}
	cresp := ClassifyResponse{Classified: true, Zone: "user", Rule: "r"}
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"DecideRequest", func() { _, _ = dreq.Encode(buf) }},
		{"ClassifyRequest", func() { _, _ = creq.Encode(buf) }},
		{"DecideResponse", func() { _, _ = dresp.Encode(buf, OpFileWrite) }},
		{"ClassifyResponse", func() { _, _ = cresp.Encode(buf) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Errorf("Encode: %v allocations per call, want 0", n)
			}
		})
	}
}

func BenchmarkDecideRequestEncode(b *testing.B) {
	buf := make([]byte, MinBufferSize)
	r := DecideRequest{Op: OpFileWrite, Zone: "office", State: "mail", Object: "/home/alice/Documents/report.docx"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Encode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecideResponseDecode(b *testing.B) {
	in := DecideResponse{Verdict: Deny, Scope: Scope{Subject: SubjectZone, Object: ObjectPrefix, PrefixLen: 14, TTLMillis: 3600000}, Rule: "example.protected", Reason: "only system processes may change /srv/critical/"}
	msg, err := encodeSized(in.Size(), func(dst []byte) (int, error) { return in.Encode(dst, OpFileWrite) })
	if err != nil {
		b.Fatal(err)
	}
	var r DecideResponse
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Decode(msg, OpFileWrite); err != nil {
			b.Fatal(err)
		}
	}
}

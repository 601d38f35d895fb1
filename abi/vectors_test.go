package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the hex of canonical vectors in "+vectorsPath+" from their fields")

// vectorsPath holds golden vectors for SDKs in every language; SPEC.md
// ("Golden vectors") documents its conventions.
const vectorsPath = "testdata/vectors.json"

type vectorFile struct {
	ABI     string          `json:"abi"`
	Doc     string          `json:"doc,omitempty"`
	Vectors []vector        `json:"vectors"`
	Invalid []invalidVector `json:"invalid"`
}

// vector is a valid message. Canonical vectors (DecodeOnly false) must
// also be what an encoder writes for Fields, byte for byte.
type vector struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Op         uint16          `json:"op,omitempty"` // decide_response: the op of the request answered
	DecodeOnly bool            `json:"decode_only,omitempty"`
	Note       string          `json:"note,omitempty"`
	Fields     json.RawMessage `json:"fields"`
	Hex        string          `json:"hex"`
}

// invalidVector is a message every decoder must reject.
type invalidVector struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Op         uint16 `json:"op,omitempty"`
	Note       string `json:"note,omitempty"`
	Hex        string `json:"hex"`
	ErrorField string `json:"error_field"` // FieldError.Field, or "version" for ErrVersion
}

// codec adapts one message type to the vector tests.
type codec struct {
	decode   func(b []byte, op Op) (any, error)
	encode   func(v any, op Op) ([]byte, error)
	parse    func(f *fieldReader) any // fields -> value
	toFields func(v any) ordered      // value -> fields, for vectors and diagnostics
}

var codecs = map[string]codec{
	"decide_request": {
		decode: func(b []byte, _ Op) (any, error) {
			var r DecideRequest
			err := r.Decode(b)
			return r, err
		},
		encode: func(v any, _ Op) ([]byte, error) {
			r := v.(DecideRequest)
			return encodeSized(r.Size(), r.Encode)
		},
		parse: func(f *fieldReader) any {
			return DecideRequest{
				Op: Op(f.uint("op", 16)), Zone: f.str("zone"), State: f.str("state"), Object: f.str("object"),
				FS: FSKind(f.uint("fs", 8)), Proto: Proto(f.uint("proto", 8)), Port: uint16(f.uint("port", 16)),
				Addr: f.addr("addr"), TargetZone: f.str("target_zone"),
			}
		},
		toFields: func(v any) ordered {
			r := v.(DecideRequest)
			var o ordered
			o.add("op", r.Op)
			o.str("zone", r.Zone)
			o.str("state", r.State)
			o.str("object", r.Object)
			o.add("fs", r.FS)
			o.add("proto", r.Proto)
			o.add("port", r.Port)
			o.add("addr", hex.EncodeToString(r.Addr[:]))
			o.str("target_zone", r.TargetZone)
			return o
		},
	},
	"classify_request": {
		decode: func(b []byte, _ Op) (any, error) {
			var r ClassifyRequest
			err := r.Decode(b)
			return r, err
		},
		encode: func(v any, _ Op) ([]byte, error) {
			r := v.(ClassifyRequest)
			return encodeSized(r.Size(), r.Encode)
		},
		parse: func(f *fieldReader) any {
			return ClassifyRequest{
				Flags: uint32(f.uint("flags", 32)), Exe: f.str("exe"), FS: FSKind(f.uint("fs", 8)),
				CreatorZone: f.str("creator_zone"), CreatorState: f.str("creator_state"), CreatorExe: f.str("creator_exe"),
			}
		},
		toFields: func(v any) ordered {
			r := v.(ClassifyRequest)
			var o ordered
			o.add("flags", r.Flags)
			o.str("exe", r.Exe)
			o.add("fs", r.FS)
			o.str("creator_zone", r.CreatorZone)
			o.str("creator_state", r.CreatorState)
			o.str("creator_exe", r.CreatorExe)
			return o
		},
	},
	"decide_response": {
		decode: func(b []byte, op Op) (any, error) {
			var r DecideResponse
			err := r.Decode(b, op)
			return r, err
		},
		encode: func(v any, op Op) ([]byte, error) {
			r := v.(DecideResponse)
			return encodeSized(r.Size(), func(dst []byte) (int, error) { return r.Encode(dst, op) })
		},
		parse: func(f *fieldReader) any {
			return DecideResponse{
				Verdict: Verdict(f.uint("verdict", 8)),
				Scope: Scope{
					Subject: ScopeSubject(f.uint("scope_subject", 8)), Object: ScopeObject(f.uint("scope_object", 8)),
					PrefixLen: uint32(f.uint("prefix_len", 32)),
					PortLo:    uint16(f.uint("port_lo", 16)), PortHi: uint16(f.uint("port_hi", 16)),
					TTLMillis: uint32(f.uint("ttl_ms", 32)),
				},
				Rule: f.str("rule"), Reason: f.str("reason"),
			}
		},
		toFields: func(v any) ordered {
			r := v.(DecideResponse)
			var o ordered
			o.add("verdict", r.Verdict)
			o.add("scope_subject", r.Scope.Subject)
			o.add("scope_object", r.Scope.Object)
			o.add("prefix_len", r.Scope.PrefixLen)
			o.add("port_lo", r.Scope.PortLo)
			o.add("port_hi", r.Scope.PortHi)
			o.add("ttl_ms", r.Scope.TTLMillis)
			o.str("rule", r.Rule)
			o.str("reason", r.Reason)
			return o
		},
	},
	"classify_response": {
		decode: func(b []byte, _ Op) (any, error) {
			var r ClassifyResponse
			err := r.Decode(b)
			return r, err
		},
		encode: func(v any, _ Op) ([]byte, error) {
			r := v.(ClassifyResponse)
			return encodeSized(r.Size(), r.Encode)
		},
		parse: func(f *fieldReader) any {
			return ClassifyResponse{
				Classified: f.boolean("classified"), Flags: uint8(f.uint("flags", 8)),
				Zone: f.str("zone"), State: f.str("state"), Rule: f.str("rule"), Reason: f.str("reason"),
			}
		},
		toFields: func(v any) ordered {
			r := v.(ClassifyResponse)
			var o ordered
			o.add("classified", r.Classified)
			o.add("flags", r.Flags)
			o.str("zone", r.Zone)
			o.str("state", r.State)
			o.str("rule", r.Rule)
			o.str("reason", r.Reason)
			return o
		},
	},
	"metadata": {
		decode: func(b []byte, _ Op) (any, error) { return DecodeMetadata(b) },
		encode: func(v any, _ Op) ([]byte, error) {
			m := v.(Metadata)
			return m.Encode()
		},
		parse: func(f *fieldReader) any {
			return Metadata{
				Major: uint16(f.uint("major", 16)), Minor: uint16(f.uint("minor", 16)),
				Entry: uint32(f.uint("entry_points", 32)), Ops: uint32(f.uint("ops", 32)),
				Name: f.str("name"), Version: f.str("version"), Vendor: f.str("vendor"),
			}
		},
		toFields: func(v any) ordered {
			m := v.(Metadata)
			var o ordered
			o.add("major", m.Major)
			o.add("minor", m.Minor)
			o.add("entry_points", m.Entry)
			o.add("ops", m.Ops)
			o.str("name", m.Name)
			o.str("version", m.Version)
			o.str("vendor", m.Vendor)
			return o
		},
	},
}

// encodeSized encodes into a buffer of exactly size bytes and checks that
// the encoder used all of it.
func encodeSized(size int, enc func([]byte) (int, error)) ([]byte, error) {
	b := make([]byte, size)
	n, err := enc(b)
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, fmt.Errorf("encoded %d bytes, Size() says %d", n, size)
	}
	return b, nil
}

// ordered is a JSON object whose keys keep their order.
type ordered []struct {
	k string
	v any
}

func (o *ordered) add(k string, v any) {
	*o = append(*o, struct {
		k string
		v any
	}{k, v})
}

// str adds a string field, as "<k>_hex" when its bytes are not UTF-8.
func (o *ordered) str(k, s string) {
	if utf8.ValidString(s) {
		o.add(k, s)
		return
	}
	o.add(k+"_hex", hex.EncodeToString([]byte(s)))
}

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := enc.Encode(f.k); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		b.WriteByte(':')
		if err := enc.Encode(f.v); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o ordered) String() string {
	b, err := o.MarshalJSON()
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// fieldReader reads a vector's fields, remembering the first error and
// which keys were used so that a misspelt key fails the test.
type fieldReader struct {
	m    map[string]json.RawMessage
	used map[string]bool
	err  error
}

func newFieldReader(raw json.RawMessage) (*fieldReader, error) {
	f := &fieldReader{used: map[string]bool{}}
	if err := json.Unmarshal(raw, &f.m); err != nil {
		return nil, fmt.Errorf("fields: %v", err)
	}
	return f, nil
}

func (f *fieldReader) fail(format string, a ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, a...)
	}
}

func (f *fieldReader) str(name string) string {
	raw, plain := f.m[name]
	rawHex, isHex := f.m[name+"_hex"]
	f.used[name], f.used[name+"_hex"] = true, true
	var s string
	switch {
	case plain && isHex:
		f.fail("fields %s and %s_hex are exclusive", name, name)
	case plain:
		if err := json.Unmarshal(raw, &s); err != nil {
			f.fail("field %s: %v", name, err)
		}
	case isHex:
		if err := json.Unmarshal(rawHex, &s); err != nil {
			f.fail("field %s_hex: %v", name, err)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			f.fail("field %s_hex: %v", name, err)
		}
		s = string(b)
	}
	return s
}

func (f *fieldReader) uint(name string, bits int) uint64 {
	raw, ok := f.m[name]
	f.used[name] = true
	if !ok {
		return 0
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		f.fail("field %s: %v", name, err)
		return 0
	}
	v, err := strconv.ParseUint(n.String(), 10, bits)
	if err != nil {
		f.fail("field %s: want a %d-bit unsigned integer: %v", name, bits, err)
	}
	return v
}

func (f *fieldReader) boolean(name string) bool {
	raw, ok := f.m[name]
	f.used[name] = true
	var v bool
	if ok {
		if err := json.Unmarshal(raw, &v); err != nil {
			f.fail("field %s: %v", name, err)
		}
	}
	return v
}

func (f *fieldReader) addr(name string) [16]byte {
	var a [16]byte
	if s := f.str(name); s != "" {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 16 {
			f.fail("field %s: want 32 hex digits, got %q", name, s)
		}
		copy(a[:], b)
	}
	return a
}

// done reports the first error, or an unknown key.
func (f *fieldReader) done() error {
	if f.err != nil {
		return f.err
	}
	var unknown []string
	for k := range f.m {
		if !f.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown fields %s", strings.Join(unknown, ", "))
	}
	return nil
}

func loadVectors(t testing.TB) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&vf); err != nil {
		t.Fatalf("%s: %v", vectorsPath, err)
	}
	return &vf
}

// parseVector returns the codec, the value of the fields and the bytes of v.
func parseVector(v *vector) (codec, any, []byte, error) {
	c, ok := codecs[v.Type]
	if !ok {
		return c, nil, nil, fmt.Errorf("unknown type %q", v.Type)
	}
	f, err := newFieldReader(v.Fields)
	if err != nil {
		return c, nil, nil, err
	}
	want := c.parse(f)
	if err := f.done(); err != nil {
		return c, nil, nil, err
	}
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		return c, nil, nil, fmt.Errorf("hex: %v", err)
	}
	return c, want, b, nil
}

func TestVectors(t *testing.T) {
	vf := loadVectors(t)
	if want := fmt.Sprintf("%d.%d", Major, Minor); vf.ABI != want {
		t.Errorf("abi = %q, want %q", vf.ABI, want)
	}
	names := map[string]bool{}
	for _, n := range append(vectorNames(vf.Vectors), invalidNames(vf.Invalid)...) {
		if names[n] {
			t.Errorf("duplicate vector name %q", n)
		}
		names[n] = true
	}
	changed := false
	for i := range vf.Vectors {
		v := &vf.Vectors[i]
		t.Run(v.Name, func(t *testing.T) {
			c, want, b, err := parseVector(v)
			if err != nil {
				t.Fatal(err)
			}
			if (v.Type == "decide_response") != (v.Op != 0) {
				t.Fatalf("op = %d: want an op exactly for decide_response vectors", v.Op)
			}
			if *update && !v.DecodeOnly {
				enc, err := c.encode(want, Op(v.Op))
				if err != nil {
					t.Fatalf("encoding the fields: %v", err)
				}
				if h := hex.EncodeToString(enc); h != v.Hex {
					v.Hex, b, changed = h, enc, true
				}
			}
			got, err := c.decode(b, Op(v.Op))
			if err != nil {
				t.Fatalf("decoding the hex: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoding the hex:\n got  %v\n want %v", c.toFields(got), c.toFields(want))
			}
			enc, err := c.encode(want, Op(v.Op))
			if err != nil {
				t.Fatalf("encoding the fields: %v", err)
			}
			switch {
			case !v.DecodeOnly && !bytes.Equal(enc, b):
				t.Errorf("encoding the fields:\n got  %x\n want %x", enc, b)
			case v.DecodeOnly && bytes.Equal(enc, b):
				// A decode-only vector exists to show a form encoders never
				// write; if it is canonical it tests nothing new.
				t.Errorf("decode-only vector is canonical; drop decode_only")
			}
		})
	}
	if *update && changed {
		writeVectors(t, vf)
	}
}

func TestInvalidVectors(t *testing.T) {
	vf := loadVectors(t)
	for _, v := range vf.Invalid {
		t.Run(v.Name, func(t *testing.T) {
			c, ok := codecs[v.Type]
			if !ok {
				t.Fatalf("unknown type %q", v.Type)
			}
			if (v.Type == "decide_response") != (v.Op != 0) {
				t.Fatalf("op = %d: want an op exactly for decide_response vectors", v.Op)
			}
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatalf("hex: %v", err)
			}
			_, err = c.decode(b, Op(v.Op))
			if err == nil {
				t.Fatal("decoded without error")
			}
			checkDecodeError(t, err, v.ErrorField)
		})
	}
}

// checkDecodeError checks that err is what a decoder must report: a
// *FieldError naming field, or an ErrVersion error when field is "version".
func checkDecodeError(t *testing.T, err error, field string) {
	t.Helper()
	var fe *FieldError
	isField := errors.As(err, &fe)
	if field == "version" {
		if !errors.Is(err, ErrVersion) || isField {
			t.Errorf("error %q: want an ErrVersion error", err)
		}
		return
	}
	switch {
	case !isField:
		t.Errorf("error %q (%T): want a *FieldError for field %s", err, err, field)
	case fe.Field != field:
		t.Errorf("error %q names field %q, want %q", err, fe.Field, field)
	case !errors.Is(err, ErrMalformed):
		t.Errorf("error %q does not wrap ErrMalformed", err)
	}
}

// TestVectorsCoverage keeps the vectors covering what SPEC.md promises
// they cover, so that pruning the file cannot silently lose a case.
func TestVectorsCoverage(t *testing.T) {
	vf := loadVectors(t)
	ops := map[Op]bool{}
	flags := map[uint32]bool{}
	fsKinds := map[FSKind]bool{}
	protos := map[Proto]bool{}
	verdicts := map[Verdict]bool{}
	subjects := map[ScopeSubject]bool{}
	objects := map[ScopeObject]bool{}
	respFlags := map[uint8]bool{}
	classified := map[bool]bool{}
	types := map[string]bool{}
	decodeOnly := map[string]bool{}
	hexFields := 0
	for i := range vf.Vectors {
		v := &vf.Vectors[i]
		_, val, _, err := parseVector(v)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if bytes.Contains(v.Fields, []byte(`_hex"`)) {
			hexFields++
		}
		if v.DecodeOnly {
			decodeOnly[v.Type] = true
			continue
		}
		types[v.Type] = true
		switch r := val.(type) {
		case DecideRequest:
			ops[r.Op], fsKinds[r.FS], protos[r.Proto] = true, true, true
		case ClassifyRequest:
			flags[r.Flags], fsKinds[r.FS] = true, true
		case DecideResponse:
			verdicts[r.Verdict], subjects[r.Scope.Subject], objects[r.Scope.Object] = true, true, true
		case ClassifyResponse:
			respFlags[r.Flags], classified[r.Classified] = true, true
		}
	}
	for _, o := range Ops() {
		if !ops[o] {
			t.Errorf("no canonical decide_request for %s", o)
		}
	}
	for _, f := range []uint32{0, FlagInPlace, FlagCreatorUnknown} {
		if !flags[f] {
			t.Errorf("no canonical classify_request with flags %#x", f)
		}
	}
	for f := FSLocal; f < fsLimit; f++ {
		if !fsKinds[f] {
			t.Errorf("no canonical request on a %s filesystem", f)
		}
	}
	for _, p := range []Proto{ProtoTCP, ProtoUDP} {
		if !protos[p] {
			t.Errorf("no canonical decide_request with proto %s", p)
		}
	}
	for v := Abstain; v < verdictLimit; v++ {
		if !verdicts[v] {
			t.Errorf("no canonical decide_response with verdict %s", v)
		}
	}
	for s := SubjectZoneState; s < scopeSubjectLimit; s++ {
		if !subjects[s] {
			t.Errorf("no canonical decide_response with subject scope %s", s)
		}
	}
	for s := ObjectExact; s < scopeObjectLimit; s++ {
		if !objects[s] {
			t.Errorf("no canonical decide_response with object scope %s", s)
		}
	}
	if !respFlags[FlagInherited] || !classified[true] || !classified[false] {
		t.Errorf("classify_response vectors must cover classified, abstaining and inherited answers")
	}
	for typ := range codecs {
		if !types[typ] {
			t.Errorf("no canonical %s vector", typ)
		}
		if !decodeOnly[typ] {
			t.Errorf("no forward-compatibility (decode_only) %s vector", typ)
		}
	}
	if hexFields == 0 {
		t.Errorf("no vector shows the _hex convention for non-UTF-8 bytes")
	}
	invalid := map[string]map[string]bool{}
	for _, v := range vf.Invalid {
		if invalid[v.Type] == nil {
			invalid[v.Type] = map[string]bool{}
		}
		invalid[v.Type][v.ErrorField] = true
	}
	for typ, fields := range map[string][]string{
		"decide_request":    {"version", "kind", "length", "total_size", "struct_size", "zone.len", "zone.offset", "op", "fs", "proto"},
		"classify_request":  {"version", "kind", "op", "flags", "fs", "struct_size"},
		"decide_response":   {"version", "op", "verdict", "scope_subject", "scope_object", "ttl_ms", "prefix_len", "port_lo", "rule", "reason", "reason.len"},
		"classify_response": {"version", "op", "classified", "flags", "zone", "reason"},
		"metadata":          {"version", "length", "struct_size", "entry_points", "ops", "name", "vendor"},
	} {
		for _, f := range fields {
			if !invalid[typ][f] {
				t.Errorf("no invalid %s vector with error_field %q", typ, f)
			}
		}
	}
}

func vectorNames(vs []vector) []string {
	var s []string
	for _, v := range vs {
		s = append(s, v.Name)
	}
	return s
}

func invalidNames(vs []invalidVector) []string {
	var s []string
	for _, v := range vs {
		s = append(s, v.Name)
	}
	return s
}

func writeVectors(t testing.TB, vf *vectorFile) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(vf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrote %s", vectorsPath)
}

// The embedded copy of the vectors is the file, decoded the same way.
func TestGoldenVectors(t *testing.T) {
	g, err := GoldenVectors()
	if err != nil {
		t.Fatal(err)
	}
	vf := loadVectors(t)
	if len(g) != len(vf.Vectors)+len(vf.Invalid) {
		t.Fatalf("%d golden vectors, file has %d+%d", len(g), len(vf.Vectors), len(vf.Invalid))
	}
	for _, v := range g {
		var err error
		switch v.Type {
		case "decide_request":
			var r DecideRequest
			err = r.Decode(v.Bytes)
		case "classify_request":
			var r ClassifyRequest
			err = r.Decode(v.Bytes)
		default:
			continue
		}
		if (err == nil) != v.Valid {
			t.Errorf("%s: valid %v, decode error %v", v.Name, v.Valid, err)
		}
	}
}

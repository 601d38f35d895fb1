package abi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Every decoder gets untrusted bytes: from a plugin (responses, metadata)
// or, for a plugin, from the host. The properties checked here are the ones
// the host's cache and the SDKs rely on: decoding never panics; whatever
// decodes re-encodes; re-encoding is canonical (deterministic, and a fixed
// point of decode/encode).
//
// Run a target with, for example,
//
//	go test ./abi -run '^$' -fuzz '^FuzzDecideRequestFields$' -fuzztime 30s -fuzzminimizetime 1s
//
// The default minimization budget (60s per new input) leaves the multi-
// argument targets minimizing rather than fuzzing for most of a short run.

// seedVectors adds the bytes of every vector of typ, valid or invalid, to f.
// add receives the bytes and the vector's op (decide responses only).
func seedVectors(f *testing.F, typ string, add func(b []byte, op Op)) {
	vf := loadVectors(f)
	for _, v := range vf.Vectors {
		if v.Type == typ {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				f.Fatalf("%s: %v", v.Name, err)
			}
			add(b, Op(v.Op))
		}
	}
	for _, v := range vf.Invalid {
		if v.Type == typ {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				f.Fatalf("%s: %v", v.Name, err)
			}
			add(b, Op(v.Op))
		}
	}
}

// checkRoundTrip checks that a decoded value re-encodes, that its encoding
// decodes to the same value and that encoding is deterministic.
func checkRoundTrip[T any](t *testing.T, decoded T, size int, enc func(*T, []byte) (int, error), dec func(*T, []byte) error) {
	t.Helper()
	buf := make([]byte, size)
	n, err := enc(&decoded, buf)
	if err != nil {
		t.Fatalf("decoded %+v but cannot encode it: %v", decoded, err)
	}
	if n != size {
		t.Fatalf("encoded %d bytes, Size() = %d", n, size)
	}
	var again T
	if err := dec(&again, buf[:n]); err != nil {
		t.Fatalf("canonical encoding %x does not decode: %v", buf[:n], err)
	}
	if !equal(again, decoded) {
		t.Fatalf("round trip changed the value:\n got  %+v\n want %+v", again, decoded)
	}
	buf2 := make([]byte, size+7) // a larger buffer must not change the bytes
	n2, err := enc(&again, buf2)
	if err != nil || !bytes.Equal(buf2[:n2], buf[:n]) {
		t.Fatalf("encoding is not canonical:\n first  %x\n second %x (%v)", buf[:n], buf2[:n2], err)
	}
}

func equal[T any](a, b T) bool { return any(a) == any(b) }

func FuzzDecideRequest(f *testing.F) {
	seedVectors(f, "decide_request", func(b []byte, _ Op) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		var r DecideRequest
		err := r.Decode(b)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkRoundTrip(t, r, r.Size(), (*DecideRequest).Encode, (*DecideRequest).Decode)
	})
}

func FuzzClassifyRequest(f *testing.F) {
	seedVectors(f, "classify_request", func(b []byte, _ Op) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		var r ClassifyRequest
		err := r.Decode(b)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkRoundTrip(t, r, r.Size(), (*ClassifyRequest).Encode, (*ClassifyRequest).Decode)
	})
}

func FuzzDecideResponse(f *testing.F) {
	seedVectors(f, "decide_response", func(b []byte, op Op) { f.Add(b, uint16(op)) })
	f.Fuzz(func(t *testing.T, b []byte, op uint16) {
		b = b[:len(b):len(b)]
		var r DecideResponse
		err := r.Decode(b, Op(op))
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		enc := func(r *DecideResponse, dst []byte) (int, error) { return r.Encode(dst, Op(op)) }
		dec := func(r *DecideResponse, b []byte) error { return r.Decode(b, Op(op)) }
		checkRoundTrip(t, r, r.Size(), enc, dec)
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode accepted what Validate rejects: %v", err)
		}
	})
}

func FuzzClassifyResponse(f *testing.F) {
	seedVectors(f, "classify_response", func(b []byte, _ Op) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		var r ClassifyResponse
		err := r.Decode(b)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkRoundTrip(t, r, r.Size(), (*ClassifyResponse).Encode, (*ClassifyResponse).Decode)
		if r.Classified && !ValidZone(r.Zone) {
			t.Fatalf("classified into invalid zone %q", r.Zone)
		}
	})
}

// FuzzMetadata feeds the same bytes to DecodeMetadata (as a section body),
// to ReadMetadata (as a module) and to AppendMetadata (as a module).
func FuzzMetadata(f *testing.F) {
	seedVectors(f, "metadata", func(b []byte, _ Op) {
		f.Add(b)
		f.Add(moduleWith(customSection(MetadataSection, b)))
	})
	f.Add(wasmHeader)
	f.Add(moduleWith(customSection("name", []byte{0, 1, 'x'}), []byte{1, 4, 1, 0x60, 0, 0}))
	f.Add(moduleWith(customSection(MetadataSection, nil), customSection(MetadataSection, nil)))
	f.Add(append(append([]byte(nil), wasmHeader...), 0, 0xff, 0xff, 0xff, 0xff, 0x0f))
	good := Metadata{Major: Major, Minor: Minor, Entry: EntryDecide, Ops: OpsMask(OpFileRead), Name: "fuzz", Version: "1"}
	f.Fuzz(func(t *testing.T, b []byte) {
		// No spare capacity: reading past len(b) must panic, not pass.
		b = b[:len(b):len(b)]
		if m, err := DecodeMetadata(b); err == nil {
			checkMetadataRoundTrip(t, m)
		} else {
			checkDecodeErr(t, err)
		}

		m, err := ReadMetadata(b)
		if err == nil {
			checkMetadataRoundTrip(t, m)
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrNoMetadata) {
			t.Fatalf("ReadMetadata: error %q wraps none of ErrMalformed, ErrVersion, ErrNoMetadata", err)
		}

		out, err := AppendMetadata(b, good)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("AppendMetadata: error %q does not wrap ErrMalformed", err)
			}
			return
		}
		if got, err := ReadMetadata(out); err != nil || got != good {
			t.Fatalf("ReadMetadata(AppendMetadata(b, m)) = %+v, %v; want %+v", got, err, good)
		}
		again, err := AppendMetadata(out, good)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("AppendMetadata is not idempotent (%v)", err)
		}
	})
}

func checkMetadataRoundTrip(t *testing.T, m Metadata) {
	t.Helper()
	enc, err := m.Encode()
	if err != nil {
		t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
	}
	got, err := DecodeMetadata(enc)
	if err != nil || got != m {
		t.Fatalf("round trip: got %+v, %v; want %+v", got, err, m)
	}
	enc2, _ := got.Encode()
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not canonical:\n first  %x\n second %x", enc, enc2)
	}
}

// checkDecodeErr checks the error contract of the message decoders: every
// failure is a *FieldError (wrapping ErrMalformed) or wraps ErrVersion.
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		if !errors.Is(err, ErrMalformed) || fe.Field == "" {
			t.Fatalf("bad FieldError %q", err)
		}
	case errors.Is(err, ErrVersion):
	default:
		t.Fatalf("error %q (%T) is neither a *FieldError nor ErrVersion", err, err)
	}
}

// FuzzDecideRequestFields builds requests from fuzzed fields: Encode must
// fail with a FieldError exactly when a field is out of its range, and what
// encodes must decode to the same request.
func FuzzDecideRequestFields(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.Vectors {
		if v.Type != "decide_request" || v.DecodeOnly {
			continue
		}
		_, val, _, err := parseVector(&v)
		if err != nil {
			f.Fatal(err)
		}
		r := val.(DecideRequest)
		f.Add(uint16(r.Op), r.Zone, r.State, r.Object, uint8(r.FS), uint8(r.Proto), r.Port, r.Addr[:], r.TargetZone)
	}
	f.Add(uint16(13), "", "", "", uint8(3), uint8(1), uint16(0), []byte(nil), "")
	f.Add(uint16(OpFileRead), "zone-of-65-bytes-zone-of-65-bytes-zone-of-65-bytes-zone-of-65-byt", "", "", uint8(0), uint8(0), uint16(0), []byte{1, 2, 3}, "")
	f.Fuzz(func(t *testing.T, op uint16, zone, state, object string, fs, proto uint8, port uint16, addr []byte, target string) {
		r := DecideRequest{Op: Op(op), Zone: zone, State: state, Object: object, FS: FSKind(fs), Proto: Proto(proto), Port: port, TargetZone: target}
		copy(r.Addr[:], addr)
		valid := r.Op.Valid() && r.FS.Valid() && r.Proto.Valid() &&
			len(zone) <= MaxZone && len(state) <= MaxState && len(object) <= MaxObject && len(target) <= MaxZone
		buf := make([]byte, r.Size())
		n, err := r.Encode(buf)
		if !valid {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Encode(%+v) = %v, want a *FieldError", r, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%+v): %v", r, err)
		}
		var got DecideRequest
		if err := got.Decode(buf[:n]); err != nil {
			t.Fatalf("Decode(Encode(r)): %v", err)
		}
		// Requests carry no UTF-8 requirement: any bytes survive.
		if got != r {
			t.Fatalf("round trip:\n got  %+v\n want %+v", got, r)
		}
	})
}

// moduleWith returns a wasm module made of the header and sections.
func moduleWith(sections ...[]byte) []byte {
	b := append([]byte(nil), wasmHeader...)
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

// customSection returns a custom section (id 0) named name with body.
func customSection(name string, body []byte) []byte {
	var payload []byte
	payload = appendULEB(payload, uint32(len(name)))
	payload = append(payload, name...)
	payload = append(payload, body...)
	s := []byte{0}
	s = appendULEB(s, uint32(len(payload)))
	return append(s, payload...)
}

// FuzzFastPaths checks the plugin-side fast paths (fast.go) against the
// general codecs: on the same bytes, decodeAliasFast accepts exactly what
// decode accepts, with the same result, and on the same fields, encodeFast
// produces exactly what encode produces, or nothing where encode fails.
func FuzzFastPaths(f *testing.F) {
	seedVectors(f, "decide_request", func(b []byte, _ Op) { f.Add(b, uint8(0)) })
	seedVectors(f, "classify_request", func(b []byte, _ Op) { f.Add(b, uint8(1)) })
	seedVectors(f, "decide_response", func(b []byte, op Op) { f.Add(append([]byte{byte(op)}, b...), uint8(2)) })
	seedVectors(f, "classify_response", func(b []byte, _ Op) { f.Add(b, uint8(3)) })
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		b = b[:len(b):len(b)]
		switch which % 4 {
		case 0:
			var fast, slow DecideRequest
			ok, err := fast.decodeAliasFast(b), slow.decode(b, true)
			if ok != (err == nil) || ok && fast != slow {
				t.Fatalf("decide request %x: fast %v %+v, general %v %+v", b, ok, fast, err, slow)
			}
		case 1:
			var fast, slow ClassifyRequest
			ok, err := fast.decodeAliasFast(b), slow.decode(b, true)
			if ok != (err == nil) || ok && fast != slow {
				t.Fatalf("classify request %x: fast %v %+v, general %v %+v", b, ok, fast, err, slow)
			}
		case 2:
			// Fields from the fuzzed bytes, valid or not, with the op
			// in the first byte.
			if len(b) < 14 {
				return
			}
			op := Op(b[0])
			r := DecideResponse{
				Verdict: Verdict(b[1] % 4),
				Scope: Scope{
					Subject: ScopeSubject(b[2] % 4), Object: ScopeObject(b[3] % 5),
					PrefixLen: uint32(b[4] % 3), PortLo: uint16(b[5] % 3), PortHi: uint16(b[6] % 3),
					TTLMillis: le.Uint32(b[7:]) % (2 * MaxTTLMillis),
				},
			}
			split := 11 + int(b[11])%(len(b)-11)
			r.Rule, r.Reason = string(b[12:max(split, 12)]), string(b[max(split, 12):])
			compareEncodings(t, r, r.Size(), func(d []byte) int { return r.encodeFast(d, op) }, func(d []byte) (int, error) { return r.encode(d, op) })
		case 3:
			if len(b) < 8 {
				return
			}
			r := ClassifyResponse{Classified: b[0]&1 != 0, Flags: b[1] % 3}
			cut := func(i int) int { return 8 + int(b[i])%(len(b)-7) }
			a, c, d := sortedCuts(cut(2), cut(3), cut(4))
			r.Zone, r.State, r.Rule, r.Reason = string(b[8:a]), string(b[a:c]), string(b[c:d]), string(b[d:])
			compareEncodings(t, r, r.Size(), r.encodeFast, r.encode)
		}
	})
}

func sortedCuts(a, b, c int) (int, int, int) {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b, c = c, b
	}
	if a > b {
		a, b = b, a
	}
	return a, b, c
}

// compareEncodings encodes v with both paths into buffers of several sizes.
func compareEncodings(t *testing.T, v any, size int, fast func([]byte) int, general func([]byte) (int, error)) {
	t.Helper()
	for _, n := range []int{size, size - 1, size + 5} {
		if n < 0 {
			continue
		}
		fb, gb := make([]byte, n), make([]byte, n)
		fn := fast(fb)
		gn, err := general(gb)
		switch {
		case fn == 0 && err == nil:
			t.Fatalf("%+v into %d bytes: the fast path refused what the general one encodes", v, n)
		case fn != 0 && err != nil:
			t.Fatalf("%+v into %d bytes: the fast path encoded what the general one refuses (%v)", v, n, err)
		case fn != gn || !bytes.Equal(fb, gb):
			t.Fatalf("%+v: fast %x, general %x", v, fb[:fn], gb[:gn])
		}
	}
}

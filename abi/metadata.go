package abi

import (
	"bytes"
	"errors"
	"fmt"
)

// MetadataSection is the name of the WebAssembly custom section that holds a
// plugin's Metadata. The host reads it without compiling or running the
// module, so an unsupported ABI major is refused before any guest code runs.
const MetadataSection = "lineage.plugin"

// MetadataSize is the fixed-part size (struct_size) of ABI 1.0 metadata.
const MetadataSize = 40

// Entry-point bits of Metadata.Entry.
const (
	EntryClassify uint32 = 1 << 0
	EntryDecide   uint32 = 1 << 1
	entryKnown           = EntryClassify | EntryDecide
)

// Limits of metadata strings.
const (
	MaxName    = 64
	MaxVersion = 64
	MaxVendor  = 128
)

// ErrNoMetadata is returned by ReadMetadata for a module without a
// lineage.plugin section.
var ErrNoMetadata = errors.New("no " + MetadataSection + " custom section")

// Metadata describes a plugin: who made it, which ABI it speaks, which entry
// points it implements and which ops its decide handles.
type Metadata struct {
	Major, Minor uint16
	Entry        uint32 // EntryClassify | EntryDecide
	Ops          uint32 // bit n set: decide handles Op(n)
	Name         string // [a-z0-9._-], 1..64 bytes
	Version      string // free text, 1..64 bytes, e.g. "1.2.0"
	Vendor       string // free text, 0..128 bytes
}

// Handles reports whether decide handles op.
func (m *Metadata) Handles(op Op) bool { return op.Valid() && m.Ops&(1<<op) != 0 }

// OpsMask returns the Ops bitmask for ops.
func OpsMask(ops ...Op) uint32 {
	var m uint32
	for _, o := range ops {
		m |= 1 << o
	}
	return m
}

// AllOps is the Ops mask of every op this ABI version knows.
var AllOps = OpsMask(Ops()...)

const msgMeta = "metadata"

var metaSlots = [...]strSlot{
	{"name", 16, MaxName, true},
	{"version", 24, MaxVersion, true},
	{"vendor", 32, MaxVendor, true},
}

// Validate checks m's fields.
func (m *Metadata) Validate() error {
	switch {
	case m.Entry == 0 || m.Entry&^entryKnown != 0:
		return &FieldError{msgMeta, "entry_points", m.Entry, "bit 0 (classify) and/or bit 1 (decide), nothing else"}
	case m.Ops&^AllOps != 0:
		return &FieldError{msgMeta, "ops", fmt.Sprintf("%#x", m.Ops), fmt.Sprintf("bits of known ops only (mask %#x)", AllOps)}
	case m.Entry&EntryDecide != 0 && m.Ops == 0:
		return &FieldError{msgMeta, "ops", 0, "at least one op when decide is an entry point"}
	case !ValidZone(m.Name): // names share the zone alphabet
		return &FieldError{msgMeta, "name", fmt.Sprintf("%q", m.Name), "1..64 bytes of [a-z0-9._-]"}
	case m.Version == "":
		return &FieldError{msgMeta, "version", `""`, "a non-empty version"}
	}
	return checkText(msgMeta, metaSlots[:], m.Name, m.Version, m.Vendor)
}

// Encode returns the contents of the lineage.plugin section for m.
func (m *Metadata) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	strs := [...]string{m.Name, m.Version, m.Vendor}
	dst := make([]byte, MetadataSize+len(m.Name)+len(m.Version)+len(m.Vendor))
	le.PutUint32(dst[0:], MetadataSize)
	le.PutUint16(dst[4:], m.Major)
	le.PutUint16(dst[6:], m.Minor)
	le.PutUint32(dst[8:], m.Entry)
	le.PutUint32(dst[12:], m.Ops)
	putStrings(dst, MetadataSize, metaSlots[:], strs[:])
	return dst, nil
}

// DecodeMetadata parses the contents of a lineage.plugin section. Like the
// wasm module itself, it is untrusted input.
func DecodeMetadata(b []byte) (Metadata, error) {
	if len(b) < 8 {
		return Metadata{}, &FieldError{msgMeta, "length", len(b), "at least 8 bytes"}
	}
	ss := le.Uint32(b[0:])
	m := Metadata{Major: le.Uint16(b[4:]), Minor: le.Uint16(b[6:])}
	// The version is checked before the rest so that a future major with a
	// different layout gets a version error, not a layout error.
	if m.Major != Major {
		return m, fmt.Errorf("abi: plugin speaks ABI %d.%d, this host speaks %d.%d: %w", m.Major, m.Minor, Major, Minor, ErrVersion)
	}
	if ss < MetadataSize || ss > uint32(len(b)) {
		return m, &FieldError{msgMeta, "struct_size", ss, fmt.Sprintf("between %d and the section length %d", MetadataSize, len(b))}
	}
	var strs [len(metaSlots)]string
	if err := getStrings(b, int(ss), msgMeta, metaSlots[:], strs[:]); err != nil {
		return m, err
	}
	m.Entry, m.Ops = le.Uint32(b[8:]), le.Uint32(b[12:])
	m.Name, m.Version, m.Vendor = strs[0], strs[1], strs[2]
	return m, m.Validate()
}

// ReadMetadata finds and decodes the lineage.plugin section of a wasm
// module without compiling it. It walks only the section headers.
func ReadMetadata(wasm []byte) (Metadata, error) {
	var found []byte
	n := 0
	err := walkSections(wasm, func(id byte, name string, body []byte) error {
		if id == 0 && name == MetadataSection {
			found = body
			n++
		}
		return nil
	})
	if err != nil {
		return Metadata{}, err
	}
	switch n {
	case 0:
		return Metadata{}, ErrNoMetadata
	case 1:
		return DecodeMetadata(found)
	}
	return Metadata{}, fmt.Errorf("abi: %d %s custom sections, want exactly one: %w", n, MetadataSection, ErrMalformed)
}

// AppendMetadata returns wasm with a lineage.plugin custom section holding m
// appended at the end, replacing any earlier one. This is the "annotate"
// step: the Go linker cannot emit custom sections, so SDK tooling adds the
// section after linking.
func AppendMetadata(wasm []byte, m Metadata) ([]byte, error) {
	body, err := m.Encode()
	if err != nil {
		return nil, err
	}
	// Check the framing first: the copy below trusts it, and a module
	// shorter than its 8-byte header must be an error, not a panic.
	err = walkSections(wasm, func(id byte, name string, _ []byte) error { return nil })
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(wasm)+len(body)+32)
	out = append(out, wasm[:8]...)
	// Copy every section except old metadata, then append the new one.
	off := 8
	for off < len(wasm) {
		id := wasm[off]
		size, k, _ := uleb32(wasm[off+1:])
		end := off + 1 + k + int(size)
		if id == 0 {
			name, _, _ := sectionName(wasm[off+1+k : end])
			if name == MetadataSection {
				off = end
				continue
			}
		}
		out = append(out, wasm[off:end]...)
		off = end
	}
	var sec []byte
	sec = appendULEB(sec, uint32(len(MetadataSection)))
	sec = append(sec, MetadataSection...)
	sec = append(sec, body...)
	out = append(out, 0)
	out = appendULEB(out, uint32(len(sec)))
	return append(out, sec...), nil
}

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// walkSections calls fn for every section of a wasm binary, checking only
// the framing: magic, version and that each section fits.
func walkSections(wasm []byte, fn func(id byte, name string, body []byte) error) error {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], wasmHeader[:4]) {
		return fmt.Errorf("abi: not a WebAssembly module (no \\0asm magic): %w", ErrMalformed)
	}
	if !bytes.Equal(wasm[4:8], wasmHeader[4:]) {
		return fmt.Errorf("abi: WebAssembly binary version %x, want 01000000: %w", wasm[4:8], ErrMalformed)
	}
	off := 8
	for off < len(wasm) {
		id := wasm[off]
		size, k, err := uleb32(wasm[off+1:])
		if err != nil {
			return fmt.Errorf("abi: section at offset %#x: size: %v: %w", off, err, ErrMalformed)
		}
		start := off + 1 + k
		if uint64(start)+uint64(size) > uint64(len(wasm)) {
			return fmt.Errorf("abi: section %d at offset %#x: size %d runs past the end of the module (%d bytes): %w", id, off, size, len(wasm), ErrMalformed)
		}
		body := wasm[start : start+int(size)]
		name := ""
		if id == 0 {
			var rest []byte
			name, rest, err = sectionName(body)
			if err != nil {
				return fmt.Errorf("abi: custom section at offset %#x: %v: %w", off, err, ErrMalformed)
			}
			body = rest
		}
		if err := fn(id, name, body); err != nil {
			return err
		}
		off = start + int(size)
	}
	return nil
}

func sectionName(b []byte) (string, []byte, error) {
	n, k, err := uleb32(b)
	if err != nil {
		return "", nil, fmt.Errorf("name length: %v", err)
	}
	if uint64(k)+uint64(n) > uint64(len(b)) {
		return "", nil, fmt.Errorf("name of %d bytes runs past the section", n)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

func uleb32(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errors.New("truncated LEB128")
		}
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0, errors.New("LEB128 overflows 32 bits")
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("LEB128 longer than 5 bytes")
}

func appendULEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

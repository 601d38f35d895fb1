// Package replay reads event traces (shared/REPLAY-FORMAT.md: one JSON
// object per line) and drives a host.Engine through them exactly as a
// kernel layer would, with no kernel involved. It is how policies are
// tested before rollout and how plugin authors debug.
//
// It imports the engine and the ABI; it must not import kernel layers or
// wazero.
package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"

	"lineage.dev/lineage/abi"
)

// Event is one parsed trace line.
type Event struct {
	Line    int
	Kind    string // "exist", "exec", "access" or "exit"
	PID     uint32
	PPID    uint32
	HasPPID bool
	Exe     string
	FS      abi.FSKind

	Op     abi.Op
	Path   string // code.load, file.*
	Key    string // registry.*
	Proto  abi.Proto
	Addr   netip.Addr
	Port   uint16
	Target uint32 // mem.*
}

// LineError names the line and field of a bad trace line.
type LineError struct {
	Line  int
	Field string // "" when the line as a whole is bad
	Msg   string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: field %s: %s", e.Line, e.Field, e.Msg)
}

type fields struct {
	line int
	m    map[string]json.RawMessage
}

// ParseEvent parses one trace line. Unknown extra fields are ignored.
func ParseEvent(line int, b []byte) (Event, error) {
	ev := Event{Line: line}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		msg := "not a JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		return ev, &LineError{Line: line, Msg: msg}
	}
	f := fields{line, m}
	var err error
	if ev.Kind, err = f.str("event", true); err != nil {
		return ev, err
	}
	switch ev.Kind {
	case "exist", "exec":
		if ev.PID, err = f.pid("pid", true); err != nil {
			return ev, err
		}
		if ev.Exe, err = f.str("exe", true); err != nil {
			return ev, err
		}
		if ev.FS, err = f.fs(); err != nil {
			return ev, err
		}
		if ev.Kind == "exec" {
			if _, ok := m["ppid"]; ok {
				ev.HasPPID = true
				if ev.PPID, err = f.pid("ppid", true); err != nil {
					return ev, err
				}
			}
		}
	case "exit":
		if ev.PID, err = f.pid("pid", true); err != nil {
			return ev, err
		}
	case "access":
		if ev.PID, err = f.pid("pid", true); err != nil {
			return ev, err
		}
		if err = f.access(&ev); err != nil {
			return ev, err
		}
	default:
		return ev, &LineError{line, "event", fmt.Sprintf("unknown event %q (want exist, exec, access or exit)", ev.Kind)}
	}
	return ev, nil
}

func (f fields) access(ev *Event) error {
	name, err := f.str("op", true)
	if err != nil {
		return err
	}
	if ev.Op, err = abi.ParseOp(name); err != nil {
		return &LineError{f.line, "op", err.Error()}
	}
	switch ev.Op.Object() {
	case abi.ObjectPath:
		if ev.Op == abi.OpProcessExec {
			return &LineError{f.line, "op", `process.exec is not an access: use an "exec" event`}
		}
		if ev.Path, err = f.str("path", true); err != nil {
			return err
		}
		ev.FS, err = f.fs()
		return err
	case abi.ObjectKey:
		ev.Key, err = f.str("key", true)
		return err
	case abi.ObjectEndpoint:
		p, err := f.str("proto", true)
		if err != nil {
			return err
		}
		if ev.Proto, err = abi.ParseProto(p); err != nil {
			return &LineError{f.line, "proto", err.Error()}
		}
		a, err := f.str("addr", true)
		if err != nil {
			return err
		}
		if ev.Addr, err = netip.ParseAddr(a); err != nil {
			return &LineError{f.line, "addr", fmt.Sprintf("%q is not an IP address", a)}
		}
		port, err := f.uint("port", math.MaxUint16)
		ev.Port = uint16(port)
		return err
	case abi.ObjectProcess:
		ev.Target, err = f.pid("target", true)
		return err
	}
	return nil
}

func (f fields) str(name string, required bool) (string, error) {
	raw, ok := f.m[name]
	if !ok {
		if required {
			return "", &LineError{f.line, name, "missing"}
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &LineError{f.line, name, fmt.Sprintf("want a string, got %s", clip(raw))}
	}
	if required && s == "" {
		return "", &LineError{f.line, name, "empty"}
	}
	if len(s) > abi.MaxObject {
		return "", &LineError{f.line, name, fmt.Sprintf("%d bytes long; at most %d", len(s), abi.MaxObject)}
	}
	return s, nil
}

func (f fields) uint(name string, max uint64) (uint64, error) {
	raw, ok := f.m[name]
	if !ok {
		return 0, &LineError{f.line, name, "missing"}
	}
	if len(raw) == 0 || raw[0] == '"' {
		// json.Number would accept a quoted number; a trace must not.
		return 0, &LineError{f.line, name, fmt.Sprintf("want an integer, got %s", clip(raw))}
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		return 0, &LineError{f.line, name, fmt.Sprintf("want an integer, got %s", clip(raw))}
	}
	var v uint64
	if _, err := fmt.Sscanf(n.String(), "%d", &v); err != nil || fmt.Sprint(v) != n.String() {
		return 0, &LineError{f.line, name, fmt.Sprintf("want an integer from 0 to %d, got %s", max, n)}
	}
	if v > max {
		return 0, &LineError{f.line, name, fmt.Sprintf("%d is out of range (0 to %d)", v, max)}
	}
	return v, nil
}

func (f fields) pid(name string, required bool) (uint32, error) {
	v, err := f.uint(name, math.MaxUint32)
	return uint32(v), err
}

func (f fields) fs() (abi.FSKind, error) {
	s, err := f.str("fs", false)
	if err != nil {
		return 0, err
	}
	k, err := abi.ParseFSKind(s)
	if err != nil {
		return 0, &LineError{f.line, "fs", err.Error()}
	}
	return k, nil
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

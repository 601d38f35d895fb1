package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

// MaxLine is the longest trace line accepted.
const MaxLine = 1 << 20

// Result is the outcome of one exec or access line.
type Result struct {
	Event    Event
	Object   string // the object as printed: path, key, endpoint or target
	Decision host.Decision
	// Child is the new process image of an allowed exec.
	Child *host.Process
}

// Runner feeds events to an engine. Trace pids become process identities
// with a synthetic start time, so a pid reused after an exit is a new
// process, exactly as on a real machine.
type Runner struct {
	Engine *host.Engine
	clock  uint64
}

// Step applies one event. It returns a Result for exec and access events
// and nil for exist and exit. An event that does not fit the table (a pid
// that is not running, or already is) is a *LineError.
func (r *Runner) Step(ctx context.Context, ev Event) (*Result, error) {
	e := r.Engine
	r.clock++
	running := func(field string, pid uint32) (*host.Process, error) {
		p := e.Running(pid)
		if p == nil {
			return nil, &LineError{ev.Line, field, fmt.Sprintf("process %d is not running", pid)}
		}
		return p, nil
	}
	notRunning := func(pid uint32) error {
		if e.Running(pid) != nil {
			return &LineError{ev.Line, "pid", fmt.Sprintf("process %d is still running (an exit event must come first)", pid)}
		}
		return nil
	}
	switch ev.Kind {
	case "exist":
		if err := notRunning(ev.PID); err != nil {
			return nil, err
		}
		e.Exist(ctx, host.ProcessID{PID: ev.PID, Start: r.clock}, ev.Exe, ev.FS)
		return nil, nil
	case "exit":
		p, err := running("pid", ev.PID)
		if err != nil {
			return nil, err
		}
		e.Exit(p.ID)
		return nil, nil
	case "exec":
		var subj *host.Process
		var err error
		if ev.HasPPID {
			if subj, err = running("ppid", ev.PPID); err != nil {
				return nil, err
			}
			if err := notRunning(ev.PID); err != nil {
				return nil, err
			}
		} else if subj, err = running("pid", ev.PID); err != nil {
			return nil, err
		}
		d, err := e.DecideExec(ctx, subj.ID, ev.Exe, ev.FS)
		if err != nil {
			return nil, &LineError{ev.Line, "", err.Error()}
		}
		res := &Result{Event: ev, Object: ev.Exe, Decision: d}
		if d.Effective() != abi.Allow {
			return res, nil
		}
		if ev.HasPPID {
			res.Child, err = e.Start(ctx, host.ProcessID{PID: ev.PID, Start: r.clock}, subj.ID, ev.Exe, ev.FS)
		} else {
			res.Child, err = e.ExecInPlace(ctx, subj.ID, ev.Exe, ev.FS)
		}
		if err != nil {
			return nil, &LineError{ev.Line, "", err.Error()}
		}
		return res, nil
	case "access":
		subj, err := running("pid", ev.PID)
		if err != nil {
			return nil, err
		}
		req := host.Request{Subject: subj.ID, DecideRequest: abi.DecideRequest{Op: ev.Op}}
		res := &Result{Event: ev}
		switch ev.Op.Object() {
		case abi.ObjectPath:
			req.Object, req.FS, res.Object = ev.Path, ev.FS, ev.Path
		case abi.ObjectKey:
			req.Object, res.Object = ev.Key, ev.Key
		case abi.ObjectEndpoint:
			req.Proto, req.Port, req.Addr = ev.Proto, ev.Port, ev.Addr.As16()
			res.Object = fmt.Sprintf("%s %s", ev.Proto, netipPort(ev))
		case abi.ObjectProcess:
			t, err := running("target", ev.Target)
			if err != nil {
				return nil, err
			}
			req.Target = t.ID
			res.Object = fmt.Sprintf("%s(%d)", t.BaseName(), ev.Target)
		}
		d, err := e.Decide(ctx, &req)
		if err != nil {
			return nil, &LineError{ev.Line, "", err.Error()}
		}
		res.Decision = d
		return res, nil
	}
	return nil, &LineError{ev.Line, "event", fmt.Sprintf("unknown event %q", ev.Kind)}
}

func netipPort(ev Event) string {
	if ev.Addr.Is6() && !ev.Addr.Is4In6() {
		return fmt.Sprintf("[%s]:%d", ev.Addr, ev.Port)
	}
	return fmt.Sprintf("%s:%d", ev.Addr.Unmap(), ev.Port)
}

// Run reads a trace from in and calls emit for every Result, in input
// order. It stops at the first bad line and returns its *LineError; results
// before it have been emitted. Blank lines are skipped.
func (r *Runner) Run(ctx context.Context, in io.Reader, emit func(*Result) error) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		ev, err := ParseEvent(line, b)
		if err != nil {
			return err
		}
		res, err := r.Step(ctx, ev)
		if err != nil {
			return err
		}
		if res != nil {
			if err := emit(res); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{Line: line + 1, Msg: fmt.Sprintf("longer than %d bytes", MaxLine)}
		}
		return fmt.Errorf("reading trace: %w", err)
	}
	return nil
}

// Output is the JSON form of a Result (REPLAY-FORMAT.md).
type Output struct {
	Line      int            `json:"line"`
	PID       uint32         `json:"pid"`
	Op        string         `json:"op"`
	Object    string         `json:"object,omitempty"`
	Verdict   string         `json:"verdict"`
	Enforced  *bool          `json:"enforced,omitempty"`
	Zone      string         `json:"zone"`
	ChildZone string         `json:"child_zone,omitempty"`
	Rule      string         `json:"rule,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Plugin    string         `json:"plugin,omitempty"`
	Lineage   []LineageEntry `json:"lineage,omitempty"`
	Cached    bool           `json:"cached"`
	Failure   bool           `json:"failure,omitempty"`
}

// LineageEntry is one process in the chain that set the subject's zone.
type LineageEntry struct {
	PID  uint32 `json:"pid"`
	Exe  string `json:"exe"`
	Zone string `json:"zone"`
	Rule string `json:"rule,omitempty"`
}

// Output converts r to its JSON form.
func (r *Result) Output() Output {
	d := &r.Decision
	o := Output{
		Line: r.Event.Line, PID: r.Event.PID, Op: opName(r.Event), Object: r.Object,
		Verdict: d.Verdict.String(), Zone: d.Zone, Rule: d.Rule, Reason: d.Reason,
		Plugin: d.Plugin, Cached: d.Cached, Failure: d.Failure,
	}
	if d.Verdict == abi.Deny && !d.Enforced {
		f := false
		o.Enforced = &f
	}
	if r.Child != nil {
		o.ChildZone = r.Child.Zone
	}
	if d.Subject != nil {
		for _, p := range d.Subject.Lineage() {
			o.Lineage = append(o.Lineage, LineageEntry{PID: p.ID.PID, Exe: p.Exe, Zone: p.Zone, Rule: p.Rule})
		}
	}
	return o
}

func opName(ev Event) string {
	if ev.Kind == "exec" {
		return abi.OpProcessExec.String()
	}
	return ev.Op.String()
}

// WriteJSON writes r as one JSON line.
func WriteJSON(w io.Writer, r *Result) error {
	b, err := json.Marshal(r.Output())
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

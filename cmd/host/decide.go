package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/replay"
)

// contextFlags say which processes exist before the request is decided.
type contextFlags struct {
	chain string
	trace string
	line  int
}

const chainBasePID = 1000

func (c *contextFlags) register(fs *flag.FlagSet, withLine bool) {
	fs.StringVar(&c.chain, "chain", "", "the subject's ancestry as `EXE>EXE>...`: the first existed before the host, each next one was launched by the one before; pids are 1000, 1001, ... and the request's pid defaults to the last")
	fs.StringVar(&c.trace, "trace", "", "replay this trace `FILE` first, so its processes (and cache) exist")
	if withLine {
		fs.IntVar(&c.line, "line", 0, "with --trace: explain line `N` of the trace instead of an EVENT argument")
	}
}

// prepare builds the process table (and warms the cache) from the context
// flags and returns the runner and the default pid for the request.
func (c *contextFlags) prepare(ctx context.Context, s *session) (*replay.Runner, uint32, error) {
	r := &replay.Runner{Engine: s.engine}
	if c.chain != "" && c.trace != "" {
		return nil, 0, fmt.Errorf("--chain and --trace exclude each other: %w", errUsage)
	}
	var last uint32
	if c.chain != "" {
		exes := strings.Split(c.chain, ">")
		for i, exe := range exes {
			exe = strings.TrimSpace(exe)
			if exe == "" {
				return nil, 0, fmt.Errorf("--chain: element %d is empty: %w", i+1, errUsage)
			}
			pid := uint32(chainBasePID + i)
			ev := replay.Event{Line: i + 1, Kind: "exec", PID: pid, PPID: last, HasPPID: true, Exe: exe}
			if i == 0 {
				ev = replay.Event{Line: 1, Kind: "exist", PID: pid, Exe: exe}
			}
			res, err := r.Step(ctx, ev)
			if err != nil {
				return nil, 0, fmt.Errorf("--chain: %w", err)
			}
			if res != nil && res.Child == nil {
				return nil, 0, fmt.Errorf("--chain: %s may not launch %s: %s", exes[i-1], exe, res.Decision.Reason)
			}
			last = pid
		}
	}
	if c.trace != "" {
		f, err := os.Open(c.trace)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		var in io.Reader = f
		if c.line > 0 {
			in = &lineLimit{r: f, max: c.line - 1}
		}
		if err := r.Run(ctx, in, func(*replay.Result) error { return nil }); err != nil {
			return nil, 0, fmt.Errorf("--trace %s: %w", c.trace, err)
		}
	}
	return r, last, nil
}

// lineLimit passes through the first max lines of r.
type lineLimit struct {
	r    io.Reader
	max  int
	seen int
}

func (l *lineLimit) Read(p []byte) (int, error) {
	if l.seen >= l.max {
		return 0, io.EOF
	}
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			l.seen++
			if l.seen == l.max {
				return i + 1, nil
			}
		}
	}
	return n, err
}

// traceLine returns line n of a file.
func traceLine(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(b, []byte("\n"))
	if n < 1 || n > len(lines) || len(bytes.TrimSpace(lines[n-1])) == 0 {
		return nil, fmt.Errorf("--line %d: %s has no event on that line", n, path)
	}
	return lines[n-1], nil
}

// parseRequest turns an EVENT argument into an event: a trace line whose
// "event" defaults to access (or exec when it has "exe") and whose "pid"
// defaults to the last --chain process.
func parseRequest(arg string, defPID uint32) (replay.Event, error) {
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(arg))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || m == nil {
		return replay.Event{}, fmt.Errorf("EVENT: not a JSON object: %q", arg)
	}
	if _, ok := m["event"]; !ok {
		m["event"] = "access"
		if _, ok := m["exe"]; ok {
			m["event"] = "exec"
		}
	}
	if _, ok := m["pid"]; !ok && defPID != 0 {
		m["pid"] = defPID
		if m["event"] == "exec" {
			if _, ok := m["ppid"]; !ok {
				m["ppid"], m["pid"] = defPID, defPID+1000
			}
		}
	}
	b, _ := json.Marshal(m)
	ev, err := replay.ParseEvent(1, b)
	if err != nil {
		var le *replay.LineError
		if errors.As(err, &le) {
			return ev, fmt.Errorf("EVENT: field %s: %s", le.Field, le.Msg)
		}
		return ev, fmt.Errorf("EVENT: %w", err)
	}
	if ev.Kind != "exec" && ev.Kind != "access" {
		return ev, fmt.Errorf("EVENT: event %q has no decision (want access or exec)", ev.Kind)
	}
	return ev, nil
}

func cmdDecide(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var ef engineFlags
	var cf contextFlags
	fs := newFlagSet("decide", "[flags] (--chain EXE>... | --trace FILE) EVENT",
		`Decides one request and prints it as one JSON line (the replay format).
EVENT is a trace line as JSON; "event" and "pid" may be left out, e.g.
  host decide --chain 'C:\Windows\explorer.exe>C:\Program Files\Mozilla Firefox\firefox.exe' \
      '{"op":"net.bind","proto":"tcp","addr":"0.0.0.0","port":8080}'
Exit status: 0 allowed (or a deny in audit mode), 1 denied, 2 error.
`, stdout)
	ef.register(fs)
	cf.register(fs, false)
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one EVENT argument, got %d: %w", fs.NArg(), errUsage)
	}
	res, err := decideOne(ctx, &ef, &cf, fs.Arg(0), stderr)
	if err != nil {
		return err
	}
	if err := replay.WriteJSON(stdout, res); err != nil {
		return err
	}
	if res.Decision.Effective() == abi.Deny {
		return exitError{1}
	}
	return nil
}

func decideOne(ctx context.Context, ef *engineFlags, cf *contextFlags, arg string, stderr io.Writer) (*replay.Result, error) {
	s, err := ef.open(ctx, stderr)
	if err != nil {
		return nil, err
	}
	defer s.close(ctx)
	r, def, err := cf.prepare(ctx, s)
	if err != nil {
		return nil, err
	}
	ev, err := parseRequest(arg, def)
	if err != nil {
		return nil, err
	}
	if cf.line > 0 {
		ev.Line = cf.line
	}
	res, err := r.Step(ctx, ev)
	if err != nil {
		return nil, fmt.Errorf("EVENT: %w", err)
	}
	return res, nil
}

func cmdExplain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var ef engineFlags
	var cf contextFlags
	fs := newFlagSet("explain", "[flags] (--chain EXE>... | --trace FILE [--line N]) [EVENT]",
		`Decides one request and explains it: verdict, rule, reason, the deciding
plugin, the scope it was cached at, whether it came from the cache, and
the lineage that set the subject's zone. With --trace and --line, explains
that line of the trace after replaying the lines before it.
`, stdout)
	ef.register(fs)
	cf.register(fs, true)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var arg string
	switch {
	case cf.line > 0 && cf.trace == "":
		return fmt.Errorf("--line needs --trace: %w", errUsage)
	case cf.line > 0 && fs.NArg() == 0:
		b, err := traceLine(cf.trace, cf.line)
		if err != nil {
			return err
		}
		arg = string(b)
	case fs.NArg() == 1 && cf.line == 0:
		arg = fs.Arg(0)
	default:
		return fmt.Errorf("want one EVENT argument, or --trace with --line: %w", errUsage)
	}
	res, err := decideOne(ctx, &ef, &cf, arg, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			replay.Output
			Scope scopeJSON `json:"scope"`
		}{res.Output(), scopeOf(res.Decision.Scope, res.Decision.Failure)}
		b, _ := json.MarshalIndent(out, "", "  ")
		_, err := fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return writeExplanation(stdout, res)
}

type scopeJSON struct {
	Cacheable bool   `json:"cacheable"`
	Subject   string `json:"subject,omitempty"`
	Object    string `json:"object,omitempty"`
	Prefix    int    `json:"prefix_len,omitempty"`
	PortLo    uint16 `json:"port_lo,omitempty"`
	PortHi    uint16 `json:"port_hi,omitempty"`
	TTL       string `json:"ttl,omitempty"`
}

func scopeOf(s abi.Scope, failure bool) scopeJSON {
	if failure || s.TTLMillis == 0 {
		return scopeJSON{}
	}
	j := scopeJSON{Cacheable: true, Subject: s.Subject.String(), Object: s.Object.String(),
		TTL: (time.Duration(s.TTLMillis) * time.Millisecond).String()}
	switch s.Object {
	case abi.ObjectPrefix:
		j.Prefix = int(s.PrefixLen)
	case abi.ObjectPortRange:
		j.PortLo, j.PortHi = s.PortLo, s.PortHi
	}
	return j
}

func writeExplanation(w io.Writer, res *replay.Result) error {
	d := &res.Decision
	var b strings.Builder
	enf := "enforced"
	if d.Verdict == abi.Deny && !d.Enforced {
		enf = "audit mode: reported, not enforced"
	}
	fmt.Fprintf(&b, "verdict:  %s (%s)\n", d.Verdict, enf)
	p := d.Subject
	fmt.Fprintf(&b, "request:  %s(%d) %s %s\n", replay.Printable(p.BaseName()), p.ID.PID, res.Output().Op, replay.Printable(res.Object))
	fmt.Fprintf(&b, "zone:     %s\n", d.Zone)
	fmt.Fprintf(&b, "rule:     %s\n", replay.Printable(d.Rule))
	fmt.Fprintf(&b, "reason:   %s\n", replay.Printable(d.Reason))
	plugin := d.Plugin
	if plugin == "" {
		plugin = "(none)"
	}
	fmt.Fprintf(&b, "plugin:   %s\n", plugin)
	cached := "no, asked the plugins"
	if d.Cached {
		cached = "yes, answered from the decision cache"
	}
	fmt.Fprintf(&b, "cached:   %s\n", cached)
	sc := scopeOf(d.Scope, d.Failure)
	switch {
	case d.Failure:
		fmt.Fprintf(&b, "scope:    none: failure verdicts are never cached\n")
	case !sc.Cacheable:
		fmt.Fprintf(&b, "scope:    none: the answer has no TTL, so it is not cached\n")
	default:
		obj := sc.Object
		switch d.Scope.Object {
		case abi.ObjectPrefix:
			obj = fmt.Sprintf("prefix %q", res.Object[:min(int(d.Scope.PrefixLen), len(res.Object))])
		case abi.ObjectPortRange:
			obj = fmt.Sprintf("ports %d-%d", d.Scope.PortLo, d.Scope.PortHi)
		}
		fmt.Fprintf(&b, "scope:    %s, object %s, for %s\n", sc.Subject, obj, sc.TTL)
	}
	if res.Child != nil {
		fmt.Fprintf(&b, "started:  %s(%d) in zone %s (rule %s: %s)\n", replay.Printable(res.Child.BaseName()), res.Child.ID.PID, res.Child.Zone, replay.Printable(res.Child.Rule), replay.Printable(res.Child.Reason))
	}
	b.WriteString("lineage:  the chain that set the zone, subject first\n")
	for _, q := range p.Lineage() {
		how := "inherited from its creator"
		if q == p.Origin {
			how = "rule " + replay.Printable(q.Rule) + ": " + replay.Printable(q.Reason)
		}
		fmt.Fprintf(&b, "          %s(%d) [%s] %s\n", replay.Printable(q.Exe), q.ID.PID, q.Zone, how)
	}
	fmt.Fprintf(&b, "ancestry: %s\n", replay.ChainString(p.Ancestry()))
	_, err := io.WriteString(w, b.String())
	return err
}

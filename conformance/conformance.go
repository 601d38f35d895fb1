// Package conformance checks that a plugin honours the ABI (abi/SPEC.md)
// and the host's semantic contract, before a vendor ships it: static
// structure, life cycle, golden vectors, determinism, the semantics the
// decision cache relies on (monotonic inheritance, truthful scopes) and
// robustness against malformed requests. It drives the plugin through
// the host's own runtime, so a plugin is judged by the code that will run
// it, instrumentation and limits included.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

// Status of one check.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	// Skip: not run, because --only or --skip left it out or an earlier
	// check it depends on failed (Evidence says which).
	Skip Status = "skip"
)

// Result is one check's outcome.
type Result struct {
	Name     string        `json:"name"`
	Required bool          `json:"required"`
	Status   Status        `json:"status"`
	Summary  string        `json:"summary"`
	Evidence []string      `json:"evidence,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Report is the outcome of a run.
type Report struct {
	Plugin   string        `json:"plugin"`
	Metadata *abi.Metadata `json:"metadata,omitempty"`
	Results  []Result      `json:"results"`
	// Passed: every required check that ran passed, and none was
	// skipped for a failed dependency.
	Passed bool `json:"passed"`
	// Deselected lists the required checks --only or --skip left out:
	// a pass with some is a partial one.
	Deselected []string `json:"deselected,omitempty"`
}

// Options configure a run. The zero value runs every check with the
// defaults.
type Options struct {
	// Config is the plugin's sample config, which lineage_init must
	// accept (nil: the empty config).
	Config []byte
	// Only and Skip select checks by name or by group prefix ("static",
	// "semantics.scopes").
	Only, Skip []string
	// Calls is the length of the determinism run (default 10000).
	Calls int
	// FuzzCases is the number of fuzzed requests per entry point
	// (default 2000).
	FuzzCases int
	// Seed makes generated lineages and fuzzed requests reproducible.
	Seed uint64
	// InitBudget bounds one instantiation with lineage_init (default 1s;
	// the host's hard limit is its InitDeadline).
	InitBudget time.Duration
	// Limits are the host limits the plugin runs under (defaults: the
	// host's).
	Limits host.Limits
	// CacheDir keeps compiled code across runs (see host.RuntimeOptions).
	CacheDir string
}

func (o *Options) defaults() {
	if o.Calls <= 0 {
		o.Calls = 10000
	}
	if o.FuzzCases <= 0 {
		o.FuzzCases = 2000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.InitBudget <= 0 {
		o.InitBudget = time.Second
	}
	if o.Limits.InitDeadline <= 0 {
		// Enforced, not only reported: a plugin that starts slowly
		// would otherwise cost the budget on every restart.
		o.Limits.InitDeadline = o.InitBudget
	}
}

// Checks lists every check, in the order they run, with whether it is
// required for a pass.
var Checks = []struct {
	Name     string
	Required bool
	Doc      string
}{
	{"static.wasm", true, "the file is a WebAssembly module the host can instrument and compile"},
	{"static.metadata", true, "the lineage.plugin section is present and valid, and its ABI major version is supported"},
	{"static.imports", true, "only allowed WASI functions are imported"},
	{"static.memory", true, "the module defines and exports its memory, within the host's limit"},
	{"static.exports", true, "the ABI's exports exist with the right signatures"},
	{"lifecycle.sample-config", true, "lineage_init accepts the sample config, within the time budget"},
	{"lifecycle.empty-config", true, "lineage_init with an empty config answers (success or an error code) without trapping"},
	{"lifecycle.invalid-config", true, "lineage_init with invalid config bytes answers an error code or success, never a trap"},
	{"vectors", true, "every golden request of a declared op gets a well-formed answer"},
	{"determinism", true, "every request gets the same answer on a fresh instance, on a reused one and after many calls, with memory stable"},
	{"semantics.inheritance", true, "a child's decisions are never more permissive than its creator's"},
	{"semantics.scopes", true, "requests inside each claimed scope get the same verdict"},
	{"semantics.ttl", true, "TTLs are within the ABI's bounds"},
	{"robustness", true, "fuzzed, truncated, maximum-size and lying-length requests never trap, exit or overrun"},
	{"measure", false, "time per call (p50, p99) and instance memory"},
}

// Run runs the suite against one plugin file. It returns an error only
// when the suite itself cannot run; a broken plugin is a failing Report.
func Run(ctx context.Context, source string, wasm []byte, o Options) (*Report, error) {
	o.defaults()
	for _, sel := range append(slices.Clone(o.Only), o.Skip...) {
		if !knownSelector(sel) {
			return nil, fmt.Errorf("no check or group named %q (see host conformance --help)", sel)
		}
	}
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{Limits: o.Limits, CacheDir: o.CacheDir})
	if err != nil {
		return nil, err
	}
	defer rt.Close(ctx)
	s := &suite{ctx: ctx, o: o, rt: rt, source: source, wasm: wasm, report: &Report{Plugin: source}}
	defer s.close()
	s.run()
	s.report.Passed = true
	for _, r := range s.report.Results {
		if r.Required && r.Status == Fail {
			s.report.Passed = false
		}
		if r.Required && r.Status == Skip && strings.HasPrefix(r.Summary, "not run: ") {
			s.report.Passed = false
		}
		if r.Required && r.Status == Skip && r.Summary == "deselected" {
			s.report.Deselected = append(s.report.Deselected, r.Name)
		}
	}
	return s.report, nil
}

func knownSelector(sel string) bool {
	for _, c := range Checks {
		if c.Name == sel || strings.HasPrefix(c.Name, sel+".") {
			return true
		}
	}
	return false
}

func (o *Options) selected(name string) bool {
	match := func(sel string) bool { return name == sel || strings.HasPrefix(name, sel+".") }
	if len(o.Only) > 0 && !slices.ContainsFunc(o.Only, match) {
		return false
	}
	return !slices.ContainsFunc(o.Skip, match)
}

// suite is one run's state.
type suite struct {
	ctx    context.Context
	o      Options
	rt     *host.Runtime
	source string
	wasm   []byte
	report *Report

	plugin *host.Plugin // compiled, when the static checks passed
	meta   abi.Metadata
	// failed dependencies: a check that needs a working plugin is not
	// run when there is none.
	broken string
}

func (s *suite) close() {
	if s.plugin != nil {
		s.plugin.Close(s.ctx)
	}
}

// check is the outcome a check function reports.
type check struct {
	skip     string // set: the check could not run, and says why ("not run: ...")
	fail     bool
	gaveUp   bool // the caller gave up on the plugin; stop has said so
	summary  string
	evidence []string
}

func (c *check) failf(format string, a ...any) {
	c.fail = true
	c.evidence = append(c.evidence, fmt.Sprintf(format, a...))
}

func (c *check) notef(format string, a ...any) {
	c.evidence = append(c.evidence, fmt.Sprintf(format, a...))
}

// maxEvidence bounds each check's evidence lines.
const maxEvidence = 12

func (s *suite) do(name string, needsPlugin bool, f func(c *check)) {
	r := Result{Name: name}
	for _, c := range Checks {
		if c.Name == name {
			r.Required = c.Required
		}
	}
	switch {
	case !s.o.selected(name):
		r.Status, r.Summary = Skip, "deselected"
	case needsPlugin && s.broken != "":
		r.Status, r.Summary = Skip, "not run: "+s.broken
	default:
		start := time.Now()
		var c check
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.failf("the check itself panicked: %v", p)
				}
			}()
			f(&c)
		}()
		r.Elapsed = time.Since(start)
		r.Status, r.Summary = Pass, c.summary
		if c.skip != "" {
			r.Status, r.Summary = Skip, c.skip
		}
		if c.fail {
			r.Status = Fail
			if r.Summary == "" && len(c.evidence) > 0 {
				r.Summary = c.evidence[0]
			}
		}
		if len(c.evidence) > maxEvidence {
			n := len(c.evidence) - maxEvidence
			c.evidence = append(c.evidence[:maxEvidence], fmt.Sprintf("... and %d more", n))
		}
		r.Evidence = c.evidence
	}
	s.report.Results = append(s.report.Results, r)
}

func (s *suite) run() {
	s.static()
	s.lifecycle()
	s.vectors()
	s.determinism()
	s.semantics()
	s.robustness()
	s.measure()
}

// static runs the host's own static checks and reports them by name.
func (s *suite) static() {
	meta, metaErr := abi.ReadMetadata(s.wasm)
	if metaErr == nil {
		s.meta = meta
		s.report.Metadata = &meta
	}
	p, err := s.compile()
	byCheck := map[string][]string{}
	for _, se := range host.StaticErrors(err) {
		byCheck[se.Check] = append(byCheck[se.Check], se.Err.Error())
	}
	if err != nil && len(byCheck) == 0 {
		byCheck[host.CheckWasm] = []string{err.Error()}
	}
	if err == nil {
		s.plugin = p
	} else {
		s.broken = "the plugin did not pass the static checks"
	}
	for _, name := range []string{host.CheckWasm, host.CheckMetadata, host.CheckImports, host.CheckMemory, host.CheckExports} {
		s.do("static."+name, false, func(c *check) {
			switch {
			case len(byCheck[name]) > 0:
				for _, e := range byCheck[name] {
					c.failf("%s", e)
				}
				c.summary = byCheck[name][0]
			case name == host.CheckMetadata && metaErr != nil:
				// Compile stopped before reading the metadata; read it
				// here, so both problems are reported.
				c.failf("%v", metaErr)
				c.summary = metaErr.Error()
			case name == host.CheckWasm || name == host.CheckMetadata || s.plugin != nil:
				c.summary = s.staticSummary(name)
			default:
				c.skip = "not run: the module failed an earlier check"
			}
		})
	}
}

// compile is Runtime.Compile with any panic in the rewriter or the
// compiler turned into a failure of static.wasm.
func (s *suite) compile() (p *host.Plugin, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, &host.StaticError{Check: host.CheckWasm, Err: fmt.Errorf("the host failed on this module: %v", r)}
		}
	}()
	return s.rt.Compile(s.ctx, s.source, s.wasm, s.o.Config)
}

func (s *suite) staticSummary(name string) string {
	switch name {
	case host.CheckWasm:
		return fmt.Sprintf("a WebAssembly module of %d bytes", len(s.wasm))
	case host.CheckMetadata:
		m := s.meta
		return fmt.Sprintf("%s %s by %s, ABI %d.%d (host speaks %d.%d), entry points %s, ops %s",
			m.Name, m.Version, m.Vendor, m.Major, m.Minor, abi.Major, abi.Minor, entryList(m.Entry), opList(m.Ops))
	case host.CheckImports:
		return "only WASI imports"
	case host.CheckMemory:
		return "defines and exports its memory within the limit"
	default:
		return "every required export, with the right signature"
	}
}

func opList(mask uint32) string {
	var names []string
	for _, op := range abi.Ops() {
		if mask&(1<<uint(op)) != 0 {
			names = append(names, op.String())
		}
	}
	if len(names) == len(abi.Ops()) {
		return "all"
	}
	return strings.Join(names, ",")
}

// session starts a fresh instance with the sample config.
func (s *suite) session() (*host.Session, error) {
	return s.plugin.NewSession(s.ctx, s.o.Config)
}

func describe(err error) string {
	var ie *host.InitError
	if errors.As(err, &ie) {
		return fmt.Sprintf("lineage_init answered error code %s: %s", ie.Code, ie.Message)
	}
	return err.Error()
}

func (s *suite) lifecycle() {
	s.do("lifecycle.sample-config", true, func(c *check) {
		sess, err := s.session()
		if err != nil {
			c.failf("starting with the sample config (%d bytes): %s", len(s.o.Config), describe(err))
			c.summary = "the plugin does not start with its sample config"
			s.broken = "the plugin does not start with its sample config"
			return
		}
		defer sess.Close(s.ctx)
		c.summary = fmt.Sprintf("started in %v with the %d-byte sample config", sess.InitTime.Round(time.Microsecond), len(s.o.Config))
		if sess.InitTime > s.o.InitBudget {
			c.failf("instantiation and lineage_init took %v, over the budget of %v", sess.InitTime, s.o.InitBudget)
		}
	})
	for _, tc := range []struct {
		name   string
		config []byte
	}{
		{"lifecycle.empty-config", []byte{}},
		{"lifecycle.invalid-config", []byte("\xff\xfe{not a config\x00")},
	} {
		s.do(tc.name, true, func(c *check) {
			sess, err := s.plugin.NewSession(s.ctx, tc.config)
			var ie *host.InitError
			switch {
			case err == nil:
				sess.Close(s.ctx)
				c.summary = "accepted"
			case errors.As(err, &ie):
				c.summary = fmt.Sprintf("refused with %s: %s", ie.Code, ie.Message)
				if ie.Message == "" {
					c.failf("the error code came without a message: an administrator cannot tell what is wrong")
				}
			default:
				c.summary = "failed instead of answering: " + describe(err)
				c.failf("%s", describe(err))
			}
		})
	}
}

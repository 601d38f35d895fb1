// Package host is Lineage's engine: the process table that remembers each
// process's zone, plugin state and lineage; the scoped decision cache; the
// sandboxed WebAssembly plugin runtime; and the composition of several
// plugins' answers into one decision.
//
// Kernel layers and commands drive it through Engine and never see a
// wazero type: host must not export them, and must not import kernel/.
package host

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host/internal/cache"
)

// ErrUnknownProcess is returned when a request names a process the table
// does not hold.
var ErrUnknownProcess = errors.New("unknown process")

// Mode says whether denials are enforced.
type Mode uint8

const (
	// Enforce applies every verdict (the default).
	Enforce Mode = iota
	// Audit reports would-be denials but lets the operation proceed.
	Audit
)

func (m Mode) String() string {
	if m == Audit {
		return "audit"
	}
	return "enforce"
}

// ParseMode maps "enforce" or "audit" to its Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "enforce", "":
		return Enforce, nil
	case "audit":
		return Audit, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want enforce or audit)", s)
}

// Config configures an Engine. Zero fields take the documented defaults.
type Config struct {
	Mode Mode
	// FailureVerdicts is the verdict per zone when a plugin fails (trap,
	// deadline, memory, malformed answer, quarantine), on top of the
	// default {"system": allow}. Zones not listed get
	// DefaultFailureVerdict.
	FailureVerdicts map[string]abi.Verdict
	// DefaultFailureVerdict applies to zones without an entry (default
	// deny: fail closed).
	DefaultFailureVerdict abi.Verdict
	// AbstainVerdict applies when every plugin abstains or none handles
	// the op (default allow: no policy objects).
	AbstainVerdict abi.Verdict
	// UnclassifiedZone is the zone of a process no classifier claims
	// (default "untrusted").
	UnclassifiedZone string
	// FailureZone is the zone of a process whose classification failed
	// (default "untrusted").
	FailureZone string
	// CacheEntries bounds the decision cache (default 65536).
	CacheEntries int
	Logger       hclog.Logger
	// Clock returns monotonic nanoseconds for cache TTLs; tests replace it
	// to move time. Default: a coarse clock ticking every ClockTick.
	Clock func() int64
}

// ClockTick is the resolution of the engine's default clock. Reading the
// system clock costs about half of a whole cached decision on the
// project's machines (48 ns measured for time.Since), while TTLs are
// seconds to hours, so cache expiry uses a clock a ticker advances.
const ClockTick = 4 * time.Millisecond

// coarseClock is a monotonic clock advanced by a ticker.
type coarseClock struct {
	now  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startCoarseClock() *coarseClock {
	c := &coarseClock{stop: make(chan struct{}), done: make(chan struct{})}
	t0 := time.Now()
	go func() {
		defer close(c.done)
		t := time.NewTicker(ClockTick)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.now.Store(int64(time.Since(t0)))
			case <-c.stop:
				return
			}
		}
	}()
	return c
}

func (c *coarseClock) close() {
	close(c.stop)
	<-c.done
}

func (c Config) withDefaults() (Config, error) {
	// Configured zones override the default entry; they do not drop it.
	fv := map[string]abi.Verdict{"system": abi.Allow}
	for z, v := range c.FailureVerdicts {
		fv[z] = v
	}
	c.FailureVerdicts = fv
	for z, v := range c.FailureVerdicts {
		if v != abi.Allow && v != abi.Deny {
			return c, fmt.Errorf("failure verdict for zone %q: %v, want allow or deny", z, v)
		}
	}
	if c.DefaultFailureVerdict == abi.Abstain {
		c.DefaultFailureVerdict = abi.Deny
	}
	if c.AbstainVerdict == abi.Abstain {
		c.AbstainVerdict = abi.Allow
	}
	if c.UnclassifiedZone == "" {
		c.UnclassifiedZone = "untrusted"
	}
	if c.FailureZone == "" {
		c.FailureZone = "untrusted"
	}
	for _, z := range []string{c.UnclassifiedZone, c.FailureZone} {
		if !abi.ValidZone(z) {
			return c, fmt.Errorf("zone %q: want 1..64 bytes of [a-z0-9._-]", z)
		}
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = 65536
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c, nil
}

// Engine decides access requests for processes by asking plugins, caching
// their scoped answers and remembering every process's zone. It is safe
// for concurrent use.
type Engine struct {
	cfg         Config
	plugins     []*Plugin
	classifiers []int
	deciders    [16][]int // plugin indices per op
	gen         uint64
	cache       *cache.Cache
	table       *table
	log         hclog.Logger

	clock  func() int64
	coarse *coarseClock // nil when Config.Clock was given

	failures atomic.Uint64
}

// New returns an Engine over plugins, which are consulted in order: the
// first classifier that does not abstain sets a new process's zone; for
// decisions, a deny overrides any allow.
func New(cfg Config, plugins ...*Plugin) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	e := &Engine{
		cfg: cfg, plugins: plugins, gen: 1,
		cache: cache.New(cfg.CacheEntries), table: newTable(), log: cfg.Logger.Named("engine"),
		clock: cfg.Clock,
	}
	seen := map[string]bool{}
	for i, p := range plugins {
		m := p.Metadata()
		if seen[m.Name] {
			return nil, fmt.Errorf("two plugins are named %q; names identify plugins in decisions and config", m.Name)
		}
		seen[m.Name] = true
		if m.Entry&abi.EntryClassify != 0 {
			e.classifiers = append(e.classifiers, i)
		}
		if m.Entry&abi.EntryDecide != 0 {
			for _, op := range abi.Ops() {
				if m.Handles(op) {
					e.deciders[op] = append(e.deciders[op], i)
				}
			}
		}
	}
	if e.clock == nil {
		e.coarse = startCoarseClock()
		e.clock = e.coarse.now.Load
	}
	return e, nil
}

// Close stops the engine's clock. It does not close the plugins, which
// the caller loaded and owns.
func (e *Engine) Close() {
	if e.coarse != nil {
		e.coarse.close()
		e.coarse = nil
	}
}

// Mode returns the engine's mode.
func (e *Engine) Mode() Mode { return e.cfg.Mode }

// Plugins returns the plugins in consultation order.
func (e *Engine) Plugins() []*Plugin { return append([]*Plugin(nil), e.plugins...) }

// Request is an access request in ABI form plus the identities the host
// resolves. Decide fills Zone, State and, for mem ops, Object and
// TargetZone from the process table.
type Request struct {
	Subject ProcessID
	Target  ProcessID // mem.read, mem.write: the process whose memory is accessed
	abi.DecideRequest
}

// Decision is the engine's answer.
type Decision struct {
	// Verdict is allow or deny, never abstain.
	Verdict abi.Verdict
	// Enforced is false when the engine is in audit mode: a deny is then
	// reported but not applied.
	Enforced bool
	Zone     string
	Rule     string
	Reason   string
	Plugin   string // the plugin whose answer decided; "" when none did
	Cached   bool
	// Failure: a plugin failed and Verdict is the zone's failure verdict.
	Failure bool
	Scope   abi.Scope
	Subject *Process
	// Expires is when the answer stops being used from the cache, on the
	// engine's clock (see Remaining); 0 when it is not cached.
	Expires int64
}

// Remaining is how long d stays the cached answer for its scope: zero or
// less once it has expired, or when it was never cached. The engine's
// clock is coarse (ClockTick), and an entry may be evicted earlier.
func (e *Engine) Remaining(d *Decision) time.Duration {
	if d.Expires == 0 {
		return 0
	}
	return time.Duration(d.Expires - e.clock())
}

// Effective is the verdict to apply: a deny in audit mode is an allow.
func (d *Decision) Effective() abi.Verdict {
	if d.Verdict == abi.Deny && !d.Enforced {
		return abi.Allow
	}
	return d.Verdict
}

// Decide answers r. It fails only when r names a process the table does
// not hold (ErrUnknownProcess) or r's fields are invalid (abi.ErrMalformed);
// the caller then applies its own verdict, since no policy was consulted.
// Plugin failures produce a Decision with Failure set.
func (e *Engine) Decide(ctx context.Context, r *Request) (Decision, error) {
	var d Decision
	err := e.DecideInto(ctx, r, &d)
	return d, err
}

// DecideInto is Decide writing the decision into d, which it overwrites
// whole: the form for callers that decide at kernel-event rates, since a
// Decision is large enough that returning it by value costs a cache hit a
// noticeable share of its time. On error d is the zero Decision.
func (e *Engine) DecideInto(ctx context.Context, r *Request, d *Decision) error {
	_, err := e.decideInto(ctx, r, d, false)
	return err
}

// DecideCachedInto is DecideInto from the cache alone: on a miss it calls
// no plugin and returns false, leaving d unspecified. A kernel layer uses
// it to answer on its event loop what needs no plugin, and hands the rest
// to workers.
func (e *Engine) DecideCachedInto(ctx context.Context, r *Request, d *Decision) (bool, error) {
	return e.decideInto(ctx, r, d, true)
}

func (e *Engine) decideInto(ctx context.Context, r *Request, d *Decision, cachedOnly bool) (bool, error) {
	if err := validate(&r.DecideRequest); err != nil {
		*d = Decision{}
		return false, err
	}
	p := e.table.get(r.Subject)
	if p == nil {
		*d = Decision{}
		return false, fmt.Errorf("subject %v: %w", r.Subject, ErrUnknownProcess)
	}
	if r.Op.Object() == abi.ObjectProcess {
		t := e.table.get(r.Target)
		if t == nil {
			*d = Decision{}
			return false, fmt.Errorf("target %v: %w", r.Target, ErrUnknownProcess)
		}
		r.Object, r.TargetZone = t.Exe, t.Zone
	}
	if cachedOnly {
		req := &r.DecideRequest
		req.Zone, req.State = p.Zone, ""
		v, ok := e.cache.Peek(e.gen, &p.subj, req, e.clock())
		if ok {
			e.decision(p, v, true, d)
		}
		return ok, nil
	}
	e.decide(ctx, p, &r.DecideRequest, d)
	return true, nil
}

// validate rejects requests no plugin could be asked about: answering them
// with a failure verdict would fail open for zones whose failure verdict is
// allow.
func validate(r *abi.DecideRequest) error {
	switch {
	case !r.Op.Valid():
		return &abi.FieldError{Msg: "request", Field: "op", Value: uint16(r.Op), Want: "a known op (1..12)"}
	case !r.FS.Valid():
		return &abi.FieldError{Msg: "request", Field: "fs", Value: uint8(r.FS), Want: "local, network or removable"}
	case !r.Proto.Valid():
		return &abi.FieldError{Msg: "request", Field: "proto", Value: uint8(r.Proto), Want: "tcp, udp or none"}
	case len(r.Object) > abi.MaxObject:
		return &abi.FieldError{Msg: "request", Field: "object", Value: fmt.Sprintf("%d bytes", len(r.Object)), Want: fmt.Sprintf("at most %d bytes", abi.MaxObject)}
	}
	return nil
}

func (e *Engine) decide(ctx context.Context, p *Process, req *abi.DecideRequest, d *Decision) {
	req.Zone, req.State = p.Zone, ""
	now := e.clock()
	if v, ok := e.cache.Lookup(e.gen, &p.subj, req, now); ok {
		e.decision(p, v, true, d)
		return
	}
	v, err := e.ask(ctx, p, req)
	if err != nil {
		e.failures.Add(1)
		*d = e.failureDecision(p, err)
		return
	}
	e.cache.Insert(e.gen, &p.subj, req, v, now)
	if v.Scope.TTLMillis > 0 {
		v.Expires = now + int64(v.Scope.TTLMillis)*1e6 // as Insert stored it
	}
	e.decision(p, &v, false, d)
}

func (e *Engine) decision(p *Process, v *cache.Value, cached bool, d *Decision) {
	*d = Decision{
		Verdict: v.Verdict, Enforced: e.cfg.Mode == Enforce, Zone: p.Zone,
		Rule: v.Rule, Reason: v.Reason, Plugin: v.Plugin, Cached: cached,
		Scope: v.Scope, Subject: p, Expires: v.Expires,
	}
}

// FailureVerdict is the verdict for a request of a process in zone when
// no plugin's answer can be had (a plugin failed, or a kernel layer's
// deadline passed first).
func (e *Engine) FailureVerdict(zone string) abi.Verdict {
	if v, ok := e.cfg.FailureVerdicts[zone]; ok {
		return v
	}
	return e.cfg.DefaultFailureVerdict
}

func (e *Engine) failureDecision(p *Process, err error) Decision {
	v, ok := e.cfg.FailureVerdicts[p.Zone]
	if !ok {
		v = e.cfg.DefaultFailureVerdict
	}
	if e.log.IsDebug() {
		e.log.Debug("failure verdict", "pid", p.ID.PID, "zone", p.Zone, "verdict", v, "error", err)
	}
	return Decision{
		Verdict: v, Enforced: e.cfg.Mode == Enforce, Zone: p.Zone,
		Rule: "failure", Reason: fmt.Sprintf("%s failure verdict for zone %s: %v", v, p.Zone, err),
		Failure: true, Subject: p,
	}
}

// ask composes the deciding plugins' answers in order: the first deny wins;
// otherwise the first allow (or, if all abstain, the abstain verdict). The
// scope is the intersection of the scopes of every answer consulted, since
// each of them must stay the same for the result to stay the same.
func (e *Engine) ask(ctx context.Context, p *Process, req *abi.DecideRequest) (cache.Value, error) {
	scope := abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectAny, TTLMillis: abi.MaxTTLMillis}
	var allow cache.Value // the first allow, if allowed
	allowed := false
	var resp abi.DecideResponse
	for _, i := range e.deciders[req.Op] {
		pl := e.plugins[i]
		req.State = p.State(i)
		if err := pl.Decide(ctx, req, &resp); err != nil {
			return cache.Value{}, err
		}
		switch resp.Verdict {
		case abi.Deny:
			// The deny alone decides the verdict inside its scope, but an
			// earlier plugin's answer must stay the same too, or a cached
			// hit could name a different plugin than a fresh decision.
			return cache.Value{Verdict: abi.Deny, Rule: resp.Rule, Reason: resp.Reason, Plugin: pl.Name(), Scope: intersect(scope, resp.Scope)}, nil
		case abi.Allow:
			if !allowed {
				allowed = true
				allow = cache.Value{Verdict: abi.Allow, Rule: resp.Rule, Reason: resp.Reason, Plugin: pl.Name()}
			}
		}
		scope = intersect(scope, resp.Scope)
	}
	if !allowed {
		return cache.Value{Verdict: e.cfg.AbstainVerdict, Rule: "abstain", Reason: "no plugin objects: every plugin abstained or none handles " + req.Op.String(), Scope: scope}, nil
	}
	allow.Scope = scope
	return allow, nil
}

// intersect returns the widest scope inside both a and b, which both hold
// the same request.
func intersect(a, b abi.Scope) abi.Scope {
	r := abi.Scope{Subject: min(a.Subject, b.Subject), TTLMillis: min(a.TTLMillis, b.TTLMillis)}
	switch {
	case a.Object == abi.ObjectAny:
		r.Object, r.PrefixLen, r.PortLo, r.PortHi = b.Object, b.PrefixLen, b.PortLo, b.PortHi
	case b.Object == abi.ObjectAny:
		r.Object, r.PrefixLen, r.PortLo, r.PortHi = a.Object, a.PrefixLen, a.PortLo, a.PortHi
	case a.Object == abi.ObjectPrefix && b.Object == abi.ObjectPrefix:
		r.Object, r.PrefixLen = abi.ObjectPrefix, max(a.PrefixLen, b.PrefixLen)
	case a.Object == abi.ObjectPortRange && b.Object == abi.ObjectPortRange:
		r.Object, r.PortLo, r.PortHi = abi.ObjectPortRange, max(a.PortLo, b.PortLo), min(a.PortHi, b.PortHi)
	default:
		r.Object = abi.ObjectExact
	}
	return r
}

// Exist records a process that was running before the host started. Its
// ancestry is unknown, so it is classified by its executable alone.
func (e *Engine) Exist(ctx context.Context, id ProcessID, exe string, fs abi.FSKind) *Process {
	p := e.classify(ctx, id, exe, fs, nil, abi.FlagCreatorUnknown)
	e.table.put(p)
	return p
}

// RuleAncestryLost is the rule of a process recorded by Untraced.
const RuleAncestryLost = "ancestry-lost"

// Untraced records a process whose creator is unknown although it
// started while the host was tracking processes: the event that named its
// creator was lost (a full queue, say). It is not classified, because by
// its executable alone it could pass for a service that predates the host
// (what Exist does): the failure zone applies, and no plugin is called.
func (e *Engine) Untraced(id ProcessID, exe string) *Process {
	p := newProcess(&Process{
		ID: id, Exe: exe, Zone: e.cfg.FailureZone, Rule: RuleAncestryLost, AncestryUnknown: true,
		Reason: "its creator is unknown although it started while processes were tracked (the event naming its creator was lost or late), so the failure zone " +
			e.cfg.FailureZone + " applies",
		states: make([]string, len(e.plugins)),
	})
	e.table.put(p)
	return p
}

// Start classifies and records a new process id created by creator and
// running exe. Call it after a process.exec decision allowed the launch.
func (e *Engine) Start(ctx context.Context, id, creator ProcessID, exe string, fs abi.FSKind) (*Process, error) {
	c := e.table.get(creator)
	if c == nil {
		return nil, fmt.Errorf("creator %v: %w", creator, ErrUnknownProcess)
	}
	p := e.classify(ctx, id, exe, fs, c, 0)
	e.table.put(p)
	return p, nil
}

// ExecInPlace re-classifies process id after it replaced its image with
// exe; its current image acts as the creator, so a process cannot exec
// its way out of a zone.
func (e *Engine) ExecInPlace(ctx context.Context, id ProcessID, exe string, fs abi.FSKind) (*Process, error) {
	c := e.table.get(id)
	if c == nil {
		return nil, fmt.Errorf("process %v: %w", id, ErrUnknownProcess)
	}
	p := e.classify(ctx, id, exe, fs, c, abi.FlagInPlace)
	e.table.put(p)
	return p, nil
}

// Fork records child as a copy of parent's image: same executable, zone
// and states, with parent as its creator. No plugin is called.
func (e *Engine) Fork(child, parent ProcessID) (*Process, error) {
	par := e.table.get(parent)
	if par == nil {
		return nil, fmt.Errorf("parent %v: %w", parent, ErrUnknownProcess)
	}
	p := *par
	// The child runs its parent's image, so the zone's origin is the
	// parent's: the parent itself if it earned its zone, else its origin.
	p.ID, p.Creator, p.InPlace, p.Origin = child, par, false, par.Origin
	np := newProcess(&p)
	e.table.put(np)
	return np, nil
}

// Exit forgets a process. It reports whether the process was known.
func (e *Engine) Exit(id ProcessID) bool { return e.table.remove(id) }

// Process returns the current image of a live process, or nil.
func (e *Engine) Process(id ProcessID) *Process { return e.table.get(id) }

// Running returns the live process with pid, or nil.
func (e *Engine) Running(pid uint32) *Process { return e.table.running(pid) }

func (e *Engine) classify(ctx context.Context, id ProcessID, exe string, fs abi.FSKind, creator *Process, flags uint32) *Process {
	req := abi.ClassifyRequest{Flags: flags, Exe: exe, FS: fs}
	if creator != nil {
		req.CreatorZone, req.CreatorExe = creator.Zone, creator.Exe
	}
	p := &Process{
		ID: id, Exe: exe, Creator: creator,
		AncestryUnknown: creator == nil || (flags&abi.FlagInPlace != 0 && creator.AncestryUnknown),
		InPlace:         flags&abi.FlagInPlace != 0,
		states:          make([]string, len(e.plugins)),
	}
	var resp abi.ClassifyResponse
	decided := false
	for _, i := range e.classifiers {
		pl := e.plugins[i]
		if creator != nil {
			req.CreatorState = creator.State(i)
		}
		if err := pl.Classify(ctx, &req, &resp); err != nil {
			e.failures.Add(1)
			p.Zone, p.Rule, p.Plugin, p.ClassifyFailed = e.cfg.FailureZone, "failure", pl.Name(), true
			p.Reason = fmt.Sprintf("classification failed, so the failure zone %s applies: %v", e.cfg.FailureZone, err)
			p.Origin = nil
			decided = true
			break
		}
		p.states[i] = resp.State
		if !resp.Classified || decided {
			continue
		}
		decided = true
		p.Zone, p.Rule, p.Reason, p.Plugin = resp.Zone, resp.Rule, resp.Reason, pl.Name()
		if resp.Inherited() && creator != nil {
			p.Origin = creator.Origin
		}
	}
	if !decided {
		p.Zone, p.Rule = e.cfg.UnclassifiedZone, "unclassified"
		p.Reason = "no plugin classified the process, so the unclassified zone " + e.cfg.UnclassifiedZone + " applies"
	}
	return newProcess(p)
}

// DecideExec is the process.exec decision for creator launching exe.
func (e *Engine) DecideExec(ctx context.Context, creator ProcessID, exe string, fs abi.FSKind) (Decision, error) {
	return e.Decide(ctx, &Request{Subject: creator, DecideRequest: abi.DecideRequest{Op: abi.OpProcessExec, Object: exe, FS: fs}})
}

// CacheStats are the decision cache's counters.
type CacheStats = cache.Stats

// Stats are the engine's counters.
type Stats struct {
	Cache     CacheStats
	Processes int
	// Decisions counts every decision: each is a cache hit or a miss.
	Decisions uint64
	Failures  uint64
	Plugins   []PluginInfo
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{Cache: e.cache.Stats(), Processes: e.table.len(), Failures: e.failures.Load()}
	s.Decisions = s.Cache.Hits + s.Cache.Misses
	for _, p := range e.plugins {
		s.Plugins = append(s.Plugins, p.Info())
	}
	return s
}

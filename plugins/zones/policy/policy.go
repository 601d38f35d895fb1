// Package policy is Lineage's reference zone policy (REFERENCE-POLICY.md):
// it classifies starting processes into the zones system, guarded and
// untrusted, and decides which monitored operations each zone may perform,
// with a truthful cache scope on every answer.
//
// It is pure Go so that the same code runs natively (tests, conformance,
// replay) and inside the WebAssembly plugin in plugins/zones. It must import
// only the standard library and lineage.dev/lineage/abi: not the SDK, the
// host, or anything that needs build tags or a system call. A Policy is
// immutable once built and safe for concurrent use.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"lineage.dev/lineage/abi"
)

// The zones this policy classifies into and decides for. Decide abstains
// for any other zone, which belongs to some other plugin.
const (
	ZoneSystem    = "system"
	ZoneGuarded   = "guarded"
	ZoneUntrusted = "untrusted"
)

// Rule identifiers of classify answers.
const (
	RuleZoneInherited   = "zone.inherited"    // guarded or untrusted because the creator is
	RuleZoneGuardedApp  = "zone.guarded-app"  // the executable's base name is in guarded_apps
	RuleZoneSystemSpace = "zone.system-space" // the executable lies in system space
	RuleZoneUserSpace   = "zone.user-space"   // the executable lies anywhere else
)

// Rule identifiers of decide answers. They are stable: audit logs, tests
// and administrators' filters refer to them.
const (
	RuleExecZeroTrust          = "exec.zero-trust"          // starting a program from outside system space: every zone
	RuleExecUntrusted          = "exec.untrusted"           // untrusted processes start nothing
	RuleCodeUserSpace          = "code.user-space"          // guarded: code only from system space
	RuleCodeUntrusted          = "code.untrusted"           // untrusted processes load no code
	RuleFilePrivate            = "file.private"             // guarded/untrusted: private folders
	RuleFileSystemWrite        = "file.system-write"        // guarded: no writes in system space
	RuleFileUntrustedWrite     = "file.untrusted-write"     // untrusted processes write nothing
	RuleRegistryProtected      = "registry.protected"       // guarded: protected keys
	RuleRegistryUntrustedWrite = "registry.untrusted-write" // untrusted processes write no key
	RuleMemOtherProcess        = "mem.other-process"        // guarded/untrusted: other processes' memory
	RuleNetPort                = "net.port"                 // guarded: ports outside the lists
	RuleNetBind                = "net.bind"                 // guarded/untrusted: listening
	RuleNetUntrusted           = "net.untrusted"            // untrusted processes use no network
	RuleObjectInvalid          = "object.invalid"           // guarded/untrusted: an object the policy cannot judge

	RuleAllowSystem      = "allow.system"        // the system zone, every op but exec
	RuleAllowSystemSpace = "allow.system-space"  // exec or code.load from system space
	RuleAllowRead        = "allow.read"          // file.read outside private folders
	RuleAllowUserSpace   = "allow.user-space"    // guarded writes in user, network, removable space
	RuleAllowRegRead     = "allow.registry-read" // every zone reads the registry
	RuleAllowRegistry    = "allow.registry"      // guarded writes to unprotected keys
	RuleAllowPort        = "allow.port"          // guarded traffic to a listed port

	RuleAbstainZone = "abstain.zone" // a zone of another plugin
	RuleAbstainOp   = "abstain.op"   // an op this ABI version does not know
)

// Reasons that do not depend on the config. Deny reasons of guarded and
// untrusted processes get the origin appended (see withOrigin).
const (
	reasonZeroTrust        = "process.exec from user, network or removable space is denied to every zone (zero-trust space)"
	reasonExecUntrusted    = "untrusted processes may not start programs"
	reasonCodeUserSpace    = "guarded processes may not load code from outside system space"
	reasonCodeUntrusted    = "untrusted processes may not load code"
	reasonSystemWrite      = "guarded processes may not write or delete in system space"
	reasonUntrustedWrite   = "untrusted processes may not write or delete files"
	reasonRegUntrusted     = "untrusted processes may not write the registry"
	reasonMemGuarded       = "guarded processes may not read or write another process's memory"
	reasonMemUntrusted     = "untrusted processes may not read or write another process's memory"
	reasonBindGuarded      = "guarded processes may not listen on ports"
	reasonBindUntrusted    = "untrusted processes may not listen on ports"
	reasonNetUntrusted     = "untrusted processes may not use the network"
	reasonInvalidPath      = "the policy cannot judge a path that is empty, relative or a Windows device path (\\\\?\\ or \\\\.\\)"
	reasonInvalidKey       = "the policy cannot judge a registry key outside HKLM, HKCU, HKU, HKCR, HKCC and \\REGISTRY\\"
	reasonInvalidProto     = "the policy cannot judge a connection without a protocol (want tcp or udp)"
	reasonSystem           = "the system zone may do everything except start programs from outside system space"
	reasonExecSystem       = "the program lies in system space"
	reasonExecGuarded      = "guarded processes may start programs from system space (the child is guarded too)"
	reasonCodeGuarded      = "guarded processes may load code from system space"
	reasonReadGuarded      = "guarded processes may read files outside private folders"
	reasonReadUntrusted    = "untrusted processes may read files outside private folders"
	reasonUserSpaceWrite   = "guarded processes may write and delete in user, network and removable space outside private folders"
	reasonRegRead          = "every zone may read the registry"
	reasonRegGuarded       = "guarded processes may write registry keys that are not protected"
	reasonPortTCP          = "guarded processes may connect to this TCP port"
	reasonPortUDP          = "guarded processes may use this UDP port"
	reasonAbstainZone      = "not a zone of the zones plugin (system, guarded, untrusted)"
	reasonAbstainOp        = "an operation the zones plugin does not know"
	reasonOriginUnrecorded = " (origin not recorded)"
)

// zone is a zone name resolved once per call.
type zone uint8

const (
	zoneOther zone = iota
	zoneSystem
	zoneGuarded
	zoneUntrusted
)

func zoneOf(s string) zone {
	switch s {
	case ZoneSystem:
		return zoneSystem
	case ZoneGuarded:
		return zoneGuarded
	case ZoneUntrusted:
		return zoneUntrusted
	}
	return zoneOther
}

func (z zone) String() string {
	switch z {
	case zoneSystem:
		return ZoneSystem
	case zoneGuarded:
		return ZoneGuarded
	case zoneUntrusted:
		return ZoneUntrusted
	}
	return "other"
}

// app is a compiled guarded_apps entry.
type app struct {
	name  string
	first byte // name[0], folded
	// exe: a Windows name (ending in .exe), compared ignoring case even
	// when the path does not look like a Windows path.
	exe bool
}

// Policy is a compiled Config. Build it with New.
type Policy struct {
	sys      pathList
	priv     pathList
	apps     []app // ordered by lenBucket, indexed in appLens
	appLens  lenIndex
	reg      pathList // by registry root
	tcp, udp portSet
	allowTTL uint32
	denyTTL  uint32

	// Reasons that name config entries, built once so that Decide does
	// not format strings per call.
	privReason [2][]string // [guarded, untrusted][pattern]
	regReason  []string
	tcpReason  string // net.connect over TCP to an unlisted port
	udpReason  string // net.connect over UDP
	sendReason string // net.send

	// Deny reasons with their origin note, by reason and state: denies
	// repeat for the same few ancestors, and a plugin that allocates on
	// no call never runs its garbage collector inside one (a collection
	// in a Go guest pauses the call for milliseconds).
	notesMu sync.Mutex
	notes   map[noteKey]string
}

type noteKey struct {
	reason string // one of the policy's own reasons, never request data
	z      zone
	state  string
}

// maxNotes bounds the memo (to a few hundred KiB of guest heap).
const maxNotes = 1024

// New validates c and compiles it. The errors are the same as
// ParseConfig's: they name the key, the index, the value and what was
// expected, and wrap ErrConfig.
func New(c Config) (*Policy, error) {
	p := &Policy{allowTTL: c.AllowTTLMillis, denyTTL: c.DenyTTLMillis}
	// Sized up front, so that New leaves little garbage: a plugin
	// instance's memory grows with its heap, and the host copies the
	// memory on every growth.
	p.sys.specs = make([]pathSpec, 0, len(c.SystemSpace))
	p.priv.specs = make([]pathSpec, 0, len(c.PrivateFolders))
	p.reg.specs = make([]pathSpec, 0, 2*len(c.ProtectedRegistry))
	p.apps = make([]app, 0, len(c.GuardedApps))
	p.regReason = make([]string, 0, len(c.ProtectedRegistry))
	for z := range p.privReason {
		p.privReason[z] = make([]string, 0, len(c.PrivateFolders))
	}
	for i, s := range c.SystemSpace {
		key := fmt.Sprintf("system_space[%d]", i)
		if err := checkText(key, s); err != nil {
			return nil, err
		}
		spec, msg := parsePathSpec(s, false)
		if msg != "" {
			return nil, cfgErr(key, "%q %s", s, msg)
		}
		spec.index = int32(i)
		p.sys.add(spec)
	}
	for i, s := range c.PrivateFolders {
		key := fmt.Sprintf("private_folders[%d]", i)
		if err := checkText(key, s); err != nil {
			return nil, err
		}
		spec, msg := parsePathSpec(s, true)
		if msg != "" {
			return nil, cfgErr(key, "%q %s", s, msg)
		}
		spec.index = int32(i)
		p.priv.add(spec)
		p.privReason[0] = append(p.privReason[0], clip("guarded processes may not read or write private folders ("+s+")", abi.MaxReason))
		p.privReason[1] = append(p.privReason[1], clip("untrusted processes may not read or write private folders ("+s+")", abi.MaxReason))
	}
	for i, s := range c.GuardedApps {
		key := fmt.Sprintf("guarded_apps[%d]", i)
		if err := checkText(key, s); err != nil {
			return nil, err
		}
		switch {
		case s == "." || s == "..":
			return nil, cfgErr(key, "%q is not a file name", s)
		case containsAny(s, `/\`):
			return nil, cfgErr(key, "%q contains a path separator (want a base name such as firefox.exe)", s)
		case containsAny(s, "*"):
			return nil, cfgErr(key, "%q has a wildcard * (want a plain base name)", s)
		}
		exe := len(s) > 4 && equalFold(s[len(s)-4:], ".exe")
		p.apps = append(p.apps, app{name: s, first: lower(s[0]), exe: exe})
	}
	for i, s := range c.ProtectedRegistry {
		key := fmt.Sprintf("protected_registry[%d]", i)
		if err := checkText(key, s); err != nil {
			return nil, err
		}
		en, msg := parseRegEntry(s)
		if msg != "" {
			return nil, cfgErr(key, "%q %s", s, msg)
		}
		p.reg.addReg(en, i)
		p.regReason = append(p.regReason, clip("guarded processes may not write protected registry keys ("+s+")", abi.MaxReason))
	}
	p.sys.build()
	p.priv.build()
	p.reg.build()
	slices.SortStableFunc(p.apps, func(a, b app) int { return lenBucket(len(a.name)) - lenBucket(len(b.name)) })
	p.appLens.build(len(p.apps), func(i int) int { return len(p.apps[i].name) })
	for _, l := range []struct {
		key   string
		ports []uint16
	}{{"guarded_tcp_ports", c.GuardedTCPPorts}, {"guarded_udp_ports", c.GuardedUDPPorts}} {
		for i, port := range l.ports {
			if port == 0 {
				return nil, cfgErr(fmt.Sprintf("%s[%d]", l.key, i), "0 is not a port (want 1..65535)")
			}
		}
	}
	for _, t := range []struct {
		key string
		v   uint32
	}{{"allow_ttl_ms", c.AllowTTLMillis}, {"deny_ttl_ms", c.DenyTTLMillis}} {
		if t.v > abi.MaxTTLMillis {
			return nil, cfgErr(t.key, "%d is not a cache lifetime (want milliseconds 0..%d)", t.v, abi.MaxTTLMillis)
		}
	}
	p.tcp, p.udp = newPortSet(c.GuardedTCPPorts), newPortSet(c.GuardedUDPPorts)
	// Port lists can be long; keep the reasons within abi.MaxReason with
	// room for the origin that withOrigin appends.
	const maxList = 400
	p.tcpReason = "guarded processes may connect over TCP only to ports " + clipList(p.tcp.String(), maxList)
	p.udpReason = "guarded processes may connect over UDP only to ports " + clipList(p.udp.String(), maxList)
	p.sendReason = "guarded processes may send UDP only to ports " + clipList(p.udp.String(), maxList)
	return p, nil
}

func clipList(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return clip(s, max-3) + "..."
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// Decide answers an access request. Answers are pure functions of the
// request, and each claims the widest scope inside which every request gets
// the same verdict, rule and reason.
func (p *Policy) Decide(req *abi.DecideRequest) abi.DecideResponse {
	z := zoneOf(req.Zone)
	if z == zoneOther {
		return abi.DecideResponse{
			Verdict: abi.Abstain,
			Scope:   abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectAny, TTLMillis: p.allowTTL},
			Rule:    RuleAbstainZone, Reason: reasonAbstainZone,
		}
	}
	if !req.Op.Valid() {
		return abi.DecideResponse{Verdict: abi.Abstain, Rule: RuleAbstainOp, Reason: reasonAbstainOp}
	}
	if z == zoneSystem && req.Op != abi.OpProcessExec {
		// The system zone's answer depends neither on the object nor on
		// the state.
		return p.allow(RuleAllowSystem, reasonSystem, anyScope)
	}
	switch req.Op {
	case abi.OpProcessExec:
		return p.exec(req, z)
	case abi.OpCodeLoad:
		return p.codeLoad(req, z)
	case abi.OpFileRead:
		return p.fileRead(req, z)
	case abi.OpFileWrite, abi.OpFileDelete:
		return p.fileWrite(req, z)
	case abi.OpRegistryRead:
		return p.allow(RuleAllowRegRead, reasonRegRead, anyScope)
	case abi.OpRegistryWrite:
		return p.registryWrite(req, z)
	case abi.OpNetConnect, abi.OpNetSend:
		return p.netTraffic(req, z)
	case abi.OpNetBind:
		if z == zoneGuarded {
			return p.deny(req, z, RuleNetBind, reasonBindGuarded, anyScope)
		}
		return p.deny(req, z, RuleNetBind, reasonBindUntrusted, anyScope)
	default: // abi.OpMemRead, abi.OpMemWrite: the target's zone does not matter
		if z == zoneGuarded {
			return p.deny(req, z, RuleMemOtherProcess, reasonMemGuarded, anyScope)
		}
		return p.deny(req, z, RuleMemOtherProcess, reasonMemUntrusted, anyScope)
	}
}

var (
	anyScope   = abi.Scope{Object: abi.ObjectAny}
	exactScope = abi.Scope{Object: abi.ObjectExact}
)

// prefixScope claims the objects that share o's first need bytes, rounded
// up to the end of a component so that scopes read as folders; a longer
// prefix covers fewer objects, so rounding up keeps the claim true.
func prefixScope(o string, need int, syn syntax) abi.Scope {
	if need < 0 {
		return exactScope
	}
	n := need
	if n == 0 || !syn.sep(o[n-1]) { // most needs end with a separator already
		for n < len(o) && !syn.sep(o[n]) {
			n++
		}
		if n < len(o) {
			n++
		}
	}
	return abi.Scope{Object: abi.ObjectPrefix, PrefixLen: uint32(n)}
}

func (p *Policy) allow(rule, reason string, sc abi.Scope) abi.DecideResponse {
	// Allow reasons never mention the state, so every process of the zone
	// gets the same answer.
	sc.Subject = abi.SubjectZone
	sc.TTLMillis = p.allowTTL
	return abi.DecideResponse{Verdict: abi.Allow, Scope: sc, Rule: rule, Reason: reason}
}

func (p *Policy) deny(req *abi.DecideRequest, z zone, rule, reason string, sc abi.Scope) abi.DecideResponse {
	sc.TTLMillis = p.denyTTL
	if z == zoneSystem {
		sc.Subject = abi.SubjectZone
		return abi.DecideResponse{Verdict: abi.Deny, Scope: sc, Rule: rule, Reason: reason}
	}
	// The reason names the origin from the state, so the answer holds
	// only for processes with the same state.
	sc.Subject = abi.SubjectZoneState
	return abi.DecideResponse{Verdict: abi.Deny, Scope: sc, Rule: rule, Reason: p.noted(reason, z, req.State)}
}

// noted is withOrigin, memoized. The state may alias the request buffer,
// so the key stores a copy.
func (p *Policy) noted(reason string, z zone, state string) string {
	p.notesMu.Lock()
	defer p.notesMu.Unlock()
	if r, ok := p.notes[noteKey{reason, z, state}]; ok {
		return r
	}
	r := withOrigin(reason, z, state)
	if len(p.notes) < maxNotes {
		if p.notes == nil {
			p.notes = make(map[noteKey]string)
		}
		p.notes[noteKey{reason, z, strings.Clone(state)}] = r
	}
	return r
}

// invalid denies an object the policy cannot judge, for exactly that
// object: nothing about it says what its neighbours are.
func (p *Policy) invalid(req *abi.DecideRequest, z zone, reason string) abi.DecideResponse {
	return p.deny(req, z, RuleObjectInvalid, reason, exactScope)
}

// withOrigin appends why the process is guarded or untrusted, e.g.
// "; guarded because ancestor OUTLOOK.EXE is a guarded app". It allocates
// once; allows, the common case, never come here.
func withOrigin(reason string, z zone, stateStr string) string {
	st, _ := parseState(stateStr) // a state that is not ours records no origin
	return originNote(reason, z, st)
}

// originNote is withOrigin for a state already parsed.
func originNote(reason string, z zone, st state) string {
	i := zi(z)
	if st.origin == "" {
		return clip(reason+noteUnrecorded[i], abi.MaxReason)
	}
	return clip(reason+noteBecause[i][b2i(st.inherited)]+st.origin+noteWhy[i][b2i(st.unknown)], abi.MaxReason)
}

// The fixed parts of origin notes, [guarded, untrusted], so that a note
// concatenates four strings rather than eight.
var (
	noteUnrecorded = [2]string{"; " + ZoneGuarded + reasonOriginUnrecorded, "; " + ZoneUntrusted + reasonOriginUnrecorded}
	noteBecause    = [2][2]string{ // [zone][inherited]
		{"; " + ZoneGuarded + " because ", "; " + ZoneGuarded + " because ancestor "},
		{"; " + ZoneUntrusted + " because ", "; " + ZoneUntrusted + " because ancestor "},
	}
	noteWhy = [2][2]string{ // [zone][unknown]
		{" is a guarded app", " is a guarded app" + noteUnknownAncestry},
		{" runs from outside system space", " runs from outside system space" + noteUnknownAncestry},
	}
)

const noteUnknownAncestry = " (its own ancestry is unknown: it predates the host)"

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inSystem reports whether the path lies in system space. Network and
// removable filesystems and UNC paths never do, wherever they are mounted.
func (p *Policy) inSystem(f *pathObj, fs abi.FSKind) (bool, int) {
	if fs != abi.FSLocal || f.kind == rootUNC {
		return false, 0 // fixed by the filesystem kind and the root
	}
	g := p.sys.group(f.slot)
	if n, ok := g.rejects(f); ok {
		return false, n
	}
	return g.within(f)
}

// private returns the config index of the first private-folder pattern
// the path lies in, or -1, and the need that fixes which one it is.
func (p *Policy) private(f *pathObj) (int, int) {
	g := p.priv.group(f.slot)
	if n, ok := g.rejects(f); ok {
		return -1, n
	}
	return g.firstUnder(f, true)
}

// zi indexes per-zone reason tables: 0 guarded, 1 untrusted.
func zi(z zone) int {
	if z == zoneUntrusted {
		return 1
	}
	return 0
}

func (p *Policy) exec(req *abi.DecideRequest, z zone) abi.DecideResponse {
	var f pathObj
	if !f.parse(req.Object) {
		return p.invalid(req, z, reasonInvalidPath)
	}
	sys, n := p.inSystem(&f, req.FS)
	need := maxNeed(f.need, n)
	switch {
	case !sys:
		return p.deny(req, z, RuleExecZeroTrust, reasonZeroTrust, f.scope(need))
	case z == zoneSystem:
		return p.allow(RuleAllowSystemSpace, reasonExecSystem, f.scope(need))
	case z == zoneUntrusted:
		return p.deny(req, z, RuleExecUntrusted, reasonExecUntrusted, f.scope(need))
	}
	// Starting a program reads it; a private folder inside system space
	// stays private.
	i, n := p.private(&f)
	need = maxNeed(need, n)
	if i >= 0 {
		return p.deny(req, z, RuleFilePrivate, p.privReason[zi(z)][i], f.scope(need))
	}
	return p.allow(RuleAllowSystemSpace, reasonExecGuarded, f.scope(need))
}

func (p *Policy) codeLoad(req *abi.DecideRequest, z zone) abi.DecideResponse {
	if z == zoneUntrusted {
		return p.deny(req, z, RuleCodeUntrusted, reasonCodeUntrusted, anyScope)
	}
	var f pathObj
	if !f.parse(req.Object) {
		return p.invalid(req, z, reasonInvalidPath)
	}
	sys, n := p.inSystem(&f, req.FS)
	need := maxNeed(f.need, n)
	if !sys {
		return p.deny(req, z, RuleCodeUserSpace, reasonCodeUserSpace, f.scope(need))
	}
	i, n := p.private(&f)
	need = maxNeed(need, n)
	if i >= 0 {
		return p.deny(req, z, RuleFilePrivate, p.privReason[zi(z)][i], f.scope(need))
	}
	return p.allow(RuleAllowSystemSpace, reasonCodeGuarded, f.scope(need))
}

func (p *Policy) fileRead(req *abi.DecideRequest, z zone) abi.DecideResponse {
	var f pathObj
	if !f.parse(req.Object) {
		return p.invalid(req, z, reasonInvalidPath)
	}
	i, n := p.private(&f)
	need := maxNeed(f.need, n)
	if i >= 0 {
		return p.deny(req, z, RuleFilePrivate, p.privReason[zi(z)][i], f.scope(need))
	}
	if z == zoneUntrusted {
		return p.allow(RuleAllowRead, reasonReadUntrusted, f.scope(need))
	}
	return p.allow(RuleAllowRead, reasonReadGuarded, f.scope(need))
}

func (p *Policy) fileWrite(req *abi.DecideRequest, z zone) abi.DecideResponse {
	if z == zoneUntrusted {
		return p.deny(req, z, RuleFileUntrustedWrite, reasonUntrustedWrite, anyScope)
	}
	var f pathObj
	if !f.parse(req.Object) {
		return p.invalid(req, z, reasonInvalidPath)
	}
	i, n := p.private(&f)
	need := maxNeed(f.need, n)
	if i >= 0 {
		return p.deny(req, z, RuleFilePrivate, p.privReason[zi(z)][i], f.scope(need))
	}
	sys, n := p.inSystem(&f, req.FS)
	need = maxNeed(need, n)
	if sys {
		return p.deny(req, z, RuleFileSystemWrite, reasonSystemWrite, f.scope(need))
	}
	return p.allow(RuleAllowUserSpace, reasonUserSpaceWrite, f.scope(need))
}

func (p *Policy) registryWrite(req *abi.DecideRequest, z zone) abi.DecideResponse {
	if z == zoneUntrusted {
		return p.deny(req, z, RuleRegistryUntrustedWrite, reasonRegUntrusted, anyScope)
	}
	key := req.Object
	roots, off, need, ok := parseHive(key)
	if !ok {
		return p.invalid(req, z, reasonInvalidKey)
	}
	f := pathObj{o: key, syn: synReg}
	f.first(compAt(key, off, synReg))
	// First match in root order, then config order, names the entry.
	for _, r := range roots {
		g := p.reg.group(r.id)
		i, n := -1, 0
		if n, ok = g.rejects(&f); !ok {
			i, n = g.firstUnder(&f, false)
		}
		need = maxNeed(need, n)
		if i >= 0 {
			return p.deny(req, z, RuleRegistryProtected, p.regReason[i], f.scope(need))
		}
	}
	return p.allow(RuleAllowRegistry, reasonRegGuarded, f.scope(need))
}

func (p *Policy) netTraffic(req *abi.DecideRequest, z zone) abi.DecideResponse {
	if z == zoneUntrusted {
		return p.deny(req, z, RuleNetUntrusted, reasonNetUntrusted, anyScope)
	}
	set, denyReason, allowReason := p.udp, p.sendReason, reasonPortUDP
	if req.Op == abi.OpNetConnect {
		switch req.Proto {
		case abi.ProtoTCP:
			set, denyReason, allowReason = p.tcp, p.tcpReason, reasonPortTCP
		case abi.ProtoUDP:
			denyReason = p.udpReason
		default:
			return p.invalid(req, z, reasonInvalidProto)
		}
	}
	in, lo, hi := set.lookup(req.Port)
	sc := abi.Scope{Object: abi.ObjectPortRange, PortLo: lo, PortHi: hi}
	if in {
		return p.allow(RuleAllowPort, allowReason, sc)
	}
	return p.deny(req, z, RuleNetPort, denyReason, sc)
}

package policy

import (
	"lineage.dev/lineage/abi"
)

const noteUnknown = "; creator unknown (the process predates the host), so it is classified by its executable alone"

// Classify assigns a starting process its zone, in the order of
// REFERENCE-POLICY.md: inherited from a guarded creator; a guarded app; in
// system space; else untrusted. One rule is added: a process created by an
// untrusted process is untrusted too, because a child is never more
// permissive than its creator. An in-place exec is classified with the
// process itself as creator, so no process can exec its way out of its zone.
func (p *Policy) Classify(req *abi.ClassifyRequest) abi.ClassifyResponse {
	unknown := req.CreatorUnknown()
	if !unknown {
		switch zoneOf(req.CreatorZone) {
		case zoneGuarded:
			return p.inherit(req, zoneGuarded)
		case zoneUntrusted:
			return p.inherit(req, zoneUntrusted)
		}
		// A creator without a zone is as unknown as one that predates
		// the host: nothing may be inherited from it, and the record
		// says so.
		unknown = req.CreatorZone == ""
	}
	// The unknown mark is not copied from a system creator: after a host
	// restart every process descends from one that predates it, and the
	// mark would say nothing.
	note := ""
	if unknown {
		note = noteUnknown
	}
	base := baseName(req.Exe)
	if p.guardedApp(base, isWindowsPath(req.Exe)) {
		name := sanitize(base, maxOrigin)
		return classified(ZoneGuarded, 0, state{unknown: unknown, origin: name}.encode(), RuleZoneGuardedApp, name+" is a guarded app"+note)
	}
	var f pathObj
	ok := f.parse(req.Exe)
	if ok {
		if sys, _ := p.inSystem(&f, req.FS); sys {
			return classified(ZoneSystem, 0, state{unknown: unknown}.encode(), RuleZoneSystemSpace, "the executable lies in system space"+note)
		}
	}
	var where string
	switch {
	case !ok:
		where = "the executable's path is empty, relative or a device path, so it cannot lie in system space"
	case req.FS == abi.FSNetwork || f.kind == rootUNC:
		where = "the executable lies on a network filesystem, outside system space"
	case req.FS == abi.FSRemovable:
		where = "the executable lies on removable media, outside system space"
	default:
		where = "the executable lies in user space, outside system space"
	}
	return classified(ZoneUntrusted, 0, state{unknown: unknown, origin: sanitize(base, maxOrigin)}.encode(), RuleZoneUserSpace, where+note)
}

// inherit classifies a process created by (or, in place, previously
// running as) a guarded or untrusted process: same zone, same origin.
func (p *Policy) inherit(req *abi.ClassifyRequest, z zone) abi.ClassifyResponse {
	cs, ok := parseState(req.CreatorState)
	if !ok || cs.origin == "" {
		// The creator's state is not ours (another plugin classified it,
		// or it was lost): the creator is the oldest ancestor we can name.
		cs = state{unknown: ok && cs.unknown, origin: sanitize(baseName(req.CreatorExe), maxOrigin)}
	}
	st := state{inherited: true, unknown: cs.unknown, origin: cs.origin}
	how := "created by a guarded process"
	if z == zoneUntrusted {
		how = "created by an untrusted process"
	}
	if req.InPlace() {
		how = "replaced its image while " + z.String()
	}
	return classified(z.String(), abi.FlagInherited, st.encode(), RuleZoneInherited, originNote(how, z, st))
}

func classified(zone string, flags uint8, st string, rule, reason string) abi.ClassifyResponse {
	return abi.ClassifyResponse{
		Classified: true, Flags: flags, Zone: zone, State: st,
		Rule: rule, Reason: clip(reason, abi.MaxReason),
	}
}

// guardedApp reports whether name is in guarded_apps. Windows names compare
// ignoring case: names of executables with a Windows path, and entries
// that end in .exe.
func (p *Policy) guardedApp(name string, win bool) bool {
	for lo, hi := p.appLens.span(len(name)); lo < hi; lo++ {
		a := &p.apps[lo]
		if len(a.name) != len(name) || a.first != lower(name[0]) {
			continue
		}
		if a.exe || win {
			if equalFold(name, a.name) {
				return true
			}
		} else if name == a.name {
			return true
		}
	}
	return false
}

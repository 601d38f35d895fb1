package policy

import (
	"math/bits"
	"slices"
	"strings"

	"lineage.dev/lineage/abi"
)

// This file matches request objects against the configured lists and, with
// every answer, computes how long a prefix of the object fixes that answer:
// the "need". A need n >= 0 says every object that starts with the same
// first n bytes gets the same answer, so the decision built on it may claim
// an ObjectPrefix scope of n bytes (the host keys prefixes on the filesystem
// kind too, so the filesystem kind is fixed as well). A need of -1 says no
// prefix fixes the answer (the object could still grow into a match), so
// only the exact object may be claimed.
//
// Paths are matched as the literal strings the kernel reports. Empty and "."
// components are skipped, as the kernel would resolve them; ".." is not
// resolved, because no prefix of a path can fix what "../" after it would
// reach: objects must be canonical before they reach the host's cache.
//
// A need only matters up to the end of the component it falls in:
// prefixScope rounds every need up to there (separator included), and
// rounding up commutes with maxNeed and minNeed. So the matchers below
// report an entry that differs anywhere inside a component as differing at
// that component's end, which lets them reject an entry by comparing
// lengths, and a whole list by one look at a mask. Only whether a need is
// -1 must be exact, and it is.
//
// Decisions run on every cache miss, inside WebAssembly, where a function
// call, a loop iteration, a taken branch or a copy of a large struct costs
// several times what it costs natively. So the lists are compiled into
// groups by root, each with a digest of its entries' first components;
// pathObj finds an object's root and first component once per request, and
// for most objects that decides every list at once (pathGroup.rejects and
// pathGroup.sift). Only an object that shares a first component with some
// deeper entry is split further (split), once, however many entries it is
// matched against.

// maxNeed combines the needs of two facts a decision depends on.
func maxNeed(a, b int) int {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// minNeed picks the weaker of two alternative ways to fix a fact.
func minNeed(a, b int) int {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	}
	return min(a, b)
}

// syntax says how an object splits into components.
type syntax uint8

const (
	synLinux syntax = iota // separator /, case-sensitive
	synWin                 // separators / and \, ASCII case-insensitive
	synReg                 // separator \, ASCII case-insensitive, "." is a name
)

// seps are the separators of each syntax, twice where there is one, so
// that sep needs no branch on the syntax.
var seps = [...][2]byte{synLinux: {'/', '/'}, synWin: {'\\', '/'}, synReg: {'\\', '\\'}}

func (s syntax) sep(b byte) bool {
	t := &seps[s]
	return b == t[0] || b == t[1]
}

func (s syntax) fold(b byte) byte {
	if s == synLinux {
		return b
	}
	return lower(b)
}

// nextComp finds the next component of o at or after pos, skipping
// separators and, for paths, "." components. ok is false when no complete
// component is left: the end of o was reached, or only a trailing "." that
// more bytes could turn into a name. compAt does the same, faster.
func nextComp(o string, pos int, syn syntax) (s, e int, ok bool) {
	for {
		for pos < len(o) && syn.sep(o[pos]) {
			pos++
		}
		if pos == len(o) {
			return 0, 0, false
		}
		s = pos
		for pos < len(o) && !syn.sep(o[pos]) {
			pos++
		}
		if syn != synReg && pos-s == 1 && o[s] == '.' {
			if pos == len(o) {
				return 0, 0, false
			}
			continue
		}
		return s, pos, true
	}
}

// compAt is nextComp with a shortcut for the usual case, at most one
// separator at pos and then a name that is not ".". It finds the name's
// end with strings.IndexByte, a word-at-a-time search in WebAssembly too,
// where a loop costs several nanoseconds per byte.
func compAt(o string, pos int, syn syntax) (s, e int, ok bool) {
	t := &seps[syn]
	s = pos
	if s < len(o) && (o[s] == t[0] || o[s] == t[1]) {
		s++
	}
	if s < len(o) && o[s] != t[0] && o[s] != t[1] {
		e = len(o)
		if i := strings.IndexByte(o[s:], t[0]); i >= 0 {
			e = s + i
		}
		if t[1] != t[0] { // Windows paths usually use \, but / separates too
			if i := strings.IndexByte(o[s:e], t[1]); i >= 0 {
				e = s + i
			}
		}
		if e-s != 1 || o[s] != '.' || syn == synReg {
			return s, e, true
		}
	}
	return nextComp(o, pos, syn)
}

// matchComps reports whether the components of o from byte off on start
// with comps (already folded; "*" matches any one component when wild), so
// that o is the folder comps names or lies under it, and the exact need
// that fixes this outcome. split.match does the same for many entries
// without rescanning o, and uses this only beyond the components it keeps.
func matchComps(o string, off int, syn syntax, comps []string, wild bool) (bool, int) {
	if len(comps) == 0 {
		return true, 0 // the root: fixed by whatever fixed the root
	}
	pos := off
	for _, pc := range comps {
		s, e, ok := nextComp(o, pos, syn)
		if !ok {
			return false, -1 // o may still grow into a match
		}
		if !(wild && pc == "*") {
			c := o[s:e]
			n := min(len(c), len(pc))
			for j := 0; j < n; j++ {
				if syn.fold(c[j]) != pc[j] {
					return false, s + j + 1
				}
			}
			switch {
			case len(c) < len(pc) && e < len(o):
				return false, e + 1 // the component is complete and too short
			case len(c) < len(pc):
				return false, -1 // the component may still grow into pc
			case len(c) > len(pc):
				return false, s + len(pc) + 1
			}
		}
		pos = e
	}
	if pos < len(o) {
		return true, pos + 1 // include the separator that ends the match
	}
	return true, -1 // "/usr" is in /usr/, but "/usrx" is not
}

// hasPrefixFold reports whether the list text pc (folded unless syn is
// case-sensitive) starts with the object text c.
func hasPrefixFold(pc, c string, syn syntax) bool {
	if len(c) > len(pc) {
		return false
	}
	pc = pc[:len(c)]
	if syn == synLinux {
		return pc == c
	}
	for j := range len(c) {
		if lower(c[j]) != pc[j] {
			return false
		}
	}
	return true
}

// sameComp reports whether the object's component c is an entry's
// component, pc folded and ex as configured. Objects mostly spell names as
// the config does, so c is compared with ex first, word by word, and
// folded only if that fails.
func sameComp(c, pc, ex string, syn syntax) bool {
	return c == ex || syn != synLinux && len(c) == len(pc) && hasPrefixFold(pc, c, syn)
}

// rootKind is the kind of absolute path an object is.
type rootKind uint8

const (
	rootNone  rootKind = iota // empty, relative, or a Windows device path
	rootLinux                 // /...
	rootDrive                 // C:\... or C:/...
	rootUNC                   // \\server\share\...
)

func (k rootKind) syntax() syntax {
	if k == rootLinux {
		return synLinux
	}
	return synWin
}

// pathRoot classifies o's root. off is where the components start, drive
// the folded drive letter, and need the bytes that fix the root.
func pathRoot(o string) (k rootKind, drive byte, off, need int) {
	switch {
	case len(o) >= 1 && o[0] == '/':
		return rootLinux, 0, 1, 1
	case len(o) >= 3 && isLetter(o[0]) && o[1] == ':' && synWin.sep(o[2]):
		return rootDrive, lower(o[0]), 3, 3
	case len(o) >= 3 && o[0] == '\\' && synWin.sep(o[1]):
		// \\?\ and \\.\ are device paths: they name drives and devices
		// in a form the lists cannot be matched against.
		if o[2] == '?' || o[2] == '.' {
			if len(o) == 3 || synWin.sep(o[3]) {
				return rootNone, 0, 0, -1
			}
			return rootUNC, 0, 2, 4
		}
		return rootUNC, 0, 2, 3
	}
	return rootNone, 0, 0, -1
}

func isLetter(b byte) bool { return 'a' <= lower(b) && lower(b) <= 'z' }

// isWindowsPath reports whether p is a Windows drive, UNC or device path,
// whose names compare case-insensitively.
func isWindowsPath(p string) bool {
	return len(p) >= 2 && (isLetter(p[0]) && p[1] == ':' || p[0] == '\\' && synWin.sep(p[1]))
}

// rootSlots counts the roots a pathList groups its entries by: Linux, UNC
// and each drive letter.
const rootSlots = 2 + 26

// rootSlot is the group of a root; drive is folded.
func rootSlot(k rootKind, drive byte) int {
	switch k {
	case rootLinux:
		return 0
	case rootUNC:
		return 1
	}
	return 2 + int(drive-'a')
}

// pathObj is a request's path or registry key as every decision on it
// needs it, found once per request: the path's root and the need that
// fixes the root, and the first component, o[s0:e0], where e0 is 0 if
// there is none (a component is never empty).
type pathObj struct {
	o      string
	kind   rootKind // of a path
	syn    syntax
	slot   int // the path's root's group in a pathList
	need   int // fixes the root
	s0, e0 int
	// cut is e0+1 when the first component is complete and more of the
	// object follows it, else -2. Then an entry with another first
	// component differs from the object right there, with need cut: the
	// first component and its separator.
	cut int
}

// parse sets f to path o's facts. It is false for paths no decision can
// judge.
func (f *pathObj) parse(o string) bool {
	k, drive, off, need := rootLinux, byte(0), 1, 1
	if len(o) == 0 || o[0] != '/' { // Linux paths without a call
		if k, drive, off, need = pathRoot(o); k == rootNone {
			return false
		}
	}
	syn := k.syntax()
	f.o, f.syn, f.kind, f.slot, f.need = o, syn, k, rootSlot(k, drive), need
	f.first(compAt(o, off, syn))
	return true
}

// first records the first component, as compAt found it.
func (f *pathObj) first(s, e int, ok bool) {
	f.s0, f.e0, f.cut = s, e, -2 // equal to no need
	if ok && e < len(f.o) {
		f.cut = e + 1
	}
}

// scope claims the objects that share the first need bytes.
func (f *pathObj) scope(need int) abi.Scope {
	if need != f.cut {
		return prefixScope(f.o, need, f.syn)
	}
	// The usual need, which prefixScope would return as it is.
	return abi.Scope{Object: abi.ObjectPrefix, PrefixLen: uint32(need)}
}

// maxSplit is how many leading components of an object a split keeps.
// Entries deeper than that (the defaults go five deep) are matched beyond
// it by rescanning the object with matchComps.
const maxSplit = 8

// split is an object's leading components, found once and on demand for
// every entry it is matched against. Comparing an entry with it then costs
// a length comparison per component, not a scan of the object, and a
// component no entry reaches is never scanned.
type split struct {
	o    string
	syn  syntax
	n    int  // components found so far: o[s[k]:e[k]] for k < n
	pos  int  // where the next component is looked for
	done bool // no complete component is left after the n found
	s, e [maxSplit]int
}

// init starts sp on the object whose first component f found already.
func (sp *split) init(f *pathObj) {
	sp.o, sp.syn = f.o, f.syn
	if f.e0 == 0 {
		sp.done = true // nextComp found nothing, and never will
		return
	}
	sp.s[0], sp.e[0], sp.n, sp.pos = f.s0, f.e0, 1, f.e0
}

// fill finds components until there are n, or none is left. The caller
// ensures n <= maxSplit. It is compAt in a loop, with compAt's usual case
// written out, so that the components of a path cost an IndexByte each
// and no call.
func (sp *split) fill(n int) {
	o, t := sp.o, &seps[sp.syn]
	for sp.n < n && !sp.done {
		// The last component found ends at a separator or at the end.
		pos := sp.pos
		s, e, ok := pos+1, 0, false
		if s < len(o) && o[s] != t[0] && o[s] != t[1] {
			e = len(o)
			if i := strings.IndexByte(o[s:], t[0]); i >= 0 {
				e = s + i
			}
			if t[1] != t[0] {
				if i := strings.IndexByte(o[s:e], t[1]); i >= 0 {
					e = s + i
				}
			}
			ok = e-s != 1 || o[s] != '.' || sp.syn == synReg
		}
		if !ok {
			if s, e, ok = nextComp(o, pos, sp.syn); !ok {
				sp.done = true
				return
			}
		}
		sp.s[sp.n], sp.e[sp.n] = s, e
		sp.n++
		sp.pos = e
	}
}

// match is matchComps for the object sp splits and the entry s, with the
// need rounded up to the end of the component that decided the outcome
// (see the top of this file). The first from components are known to
// match already.
func (sp *split) match(spec *pathSpec, from int, wild bool) (bool, int) {
	comps := spec.comps
	if len(comps) == 0 {
		return true, 0 // the root: fixed by whatever fixed the root
	}
	end := 0 // of the last component compared
	if from > 0 {
		end = sp.e[from-1]
	}
	if from == 1 && spec.tail != "" {
		// The object spells the rest as the config does: a match, with
		// nothing more to split.
		if t := end + len(spec.tail); strings.HasPrefix(sp.o[end:], spec.tail) && (t == len(sp.o) || sp.syn.sep(sp.o[t])) {
			if t < len(sp.o) {
				return true, t + 1
			}
			return true, -1
		}
	}
	for k := from; k < len(comps); k++ {
		if k == sp.n {
			if k == maxSplit {
				return matchComps(sp.o, end, sp.syn, comps[k:], wild)
			}
			if sp.fill(k + 1); k == sp.n {
				return false, -1 // o may still grow into a match
			}
		}
		pc, s, e := comps[k], sp.s[k], sp.e[k]
		end = e
		if wild && spec.stars&(1<<k) != 0 {
			continue
		}
		if c := sp.o[s:e]; !sameComp(c, pc, spec.exact[k], sp.syn) {
			if e < len(sp.o) {
				return false, e + 1 // the component is complete and not pc
			}
			if len(c) < len(pc) && hasPrefixFold(pc, c, sp.syn) {
				return false, -1 // the last component may still grow into pc
			}
			return false, e
		}
	}
	if end < len(sp.o) {
		return true, end + 1 // include the separator that ends the match
	}
	return true, -1 // "/usr" is in /usr/, but "/usrx" is not
}

// pathSpec is a compiled system-space prefix, private-folder pattern or
// protected registry key.
type pathSpec struct {
	index int32    // in the config list, for reasons
	slot  uint8    // of its root (a path's, or a registry root's id)
	stars uint64   // bit k: comps[k] is "*", for k < maxSplit (matchComps does the rest)
	comps []string // folded unless case-sensitive; "*" is a wildcard in patterns
	exact []string // comps as configured
	// tail is exact[1:] joined by the syntax's separator, as objects
	// usually spell what follows the first component, or "" if there is
	// nothing to follow or a "*" among it.
	tail string
}

// tailOf is pathSpec.tail for exact components.
func tailOf(exact []string, syn syntax, wild bool) string {
	if len(exact) < 2 || wild && slices.Contains(exact[1:], "*") {
		return ""
	}
	sep := string(seps[syn][0])
	return sep + strings.Join(exact[1:], sep)
}

// pathList is a list of entries compiled for matching: system_space or
// private_folders by path root, or protected_registry by registry root.
// An object can lie only under entries with its own root; when the roots
// differ, the root need (part of every decision) fixes the mismatch. Build
// it with add, then build.
type pathList struct {
	specs  []pathSpec       // ordered by root, then config order
	groups []pathGroup      // the roots' entries: runs of specs
	slots  [rootSlots]uint8 // 1 + the index in groups of each root's entries
}

// noEntries is the group of every root no entry has.
var noEntries pathGroup

// group returns the entries with a root.
func (l *pathList) group(slot int) *pathGroup {
	if i := l.slots[slot]; i > 0 {
		return &l.groups[i-1]
	}
	return &noEntries
}

func (l *pathList) add(s pathSpec) { l.specs = append(l.specs, s) }

func (l *pathList) build() {
	slices.SortStableFunc(l.specs, func(a, b pathSpec) int { return int(a.slot) - int(b.slot) })
	for i := 0; i < len(l.specs); {
		j := i + 1
		for j < len(l.specs) && l.specs[j].slot == l.specs[i].slot {
			j++
		}
		l.groups = append(l.groups, pathGroup{specs: l.specs[i:j:j]})
		l.slots[l.specs[i].slot] = uint8(len(l.groups))
		i = j
	}
	for i := range l.groups {
		l.groups[i].build()
	}
}

// pathGroup holds the entries that share a root, in config order, and the
// same entries by first component.
type pathGroup struct {
	specs []pathSpec
	// firsts are the entries' distinct first components, and byFirst[i]
	// the entries that start with firsts.names[i].
	firsts  nameSet
	byFirst []firstComp
	// open: some entry is the root itself or starts with "*", so an
	// object may lie under it whatever its first component is.
	open bool
}

// firstComp is the entries of a group that start with one component. They
// share their components up to level fork (comps[1:fork], "*" included)
// and differ at fork; when every one of them has a name there, not "*",
// forks holds those names.
type firstComp struct {
	specs []pathSpec // in config order
	alone bool       // one of them is the component alone, like /usr/
	fork  int
	forks nameSet
}

func (g *pathGroup) build() {
	for i := range g.specs {
		s := &g.specs[i]
		g.open = g.open || len(s.comps) == 0 || s.stars&1 != 0
	}
	if g.open {
		return // every entry is matched, so the digests would not be used
	}
	for i := range g.specs {
		g.firsts.add(g.specs[i].comps[0], g.specs[i].exact[0])
	}
	g.firsts.build()
	g.byFirst = make([]firstComp, len(g.firsts.names))
	for i := range g.specs {
		s := &g.specs[i]
		fc := &g.byFirst[g.firsts.index(s.comps[0])]
		fc.specs = append(fc.specs, *s)
		fc.alone = fc.alone || len(s.comps) == 1
	}
	for i := range g.byFirst {
		g.byFirst[i].build()
	}
}

func (fc *firstComp) build() {
	s0 := &fc.specs[0]
	shared := func(k int) bool {
		for _, s := range fc.specs {
			if len(s.comps) <= k || s.comps[k] != s0.comps[k] {
				return false
			}
		}
		return true
	}
	fc.fork = 1
	for fc.fork < maxSplit && shared(fc.fork) {
		fc.fork++
	}
	for _, s := range fc.specs {
		if fc.fork == maxSplit || len(s.comps) <= fc.fork || s.stars&(1<<fc.fork) != 0 {
			fc.forks = nameSet{}
			return
		}
		fc.forks.add(s.comps[fc.fork], s.exact[fc.fork])
	}
	fc.forks.build()
}

// nameSet is a set of component names, found by length and first byte
// before any is compared: most lists hold names of many lengths, and most
// names looked up are in none. Build it with add, then build.
type nameSet struct {
	names []string // folded unless case-sensitive, ordered by lenBucket
	exact []string // as configured
	lens  lenIndex
}

func (ns *nameSet) add(name, exact string) {
	if !slices.Contains(ns.names, name) {
		ns.names, ns.exact = append(ns.names, name), append(ns.exact, exact)
	}
}

func (ns *nameSet) build() {
	// Few names: an insertion sort, stable, keeps names and exact paired.
	for i := 1; i < len(ns.names); i++ {
		for j := i; j > 0 && lenBucket(len(ns.names[j])) < lenBucket(len(ns.names[j-1])); j-- {
			ns.names[j], ns.names[j-1] = ns.names[j-1], ns.names[j]
			ns.exact[j], ns.exact[j-1] = ns.exact[j-1], ns.exact[j]
		}
	}
	ns.lens.build(len(ns.names), func(i int) int { return len(ns.names[i]) })
}

// index returns the index of a name in names, or -1.
func (ns *nameSet) index(name string) int { return slices.Index(ns.names, name) }

// find returns the index of the name the object's component c is, or -1.
func (ns *nameSet) find(c string, syn syntax) int {
	c0 := syn.fold(c[0])
	for i, end := ns.lens.span(len(c)); i < end; i++ {
		if name := ns.names[i]; name[0] == c0 && sameComp(c, name, ns.exact[i], syn) {
			return i
		}
	}
	return -1
}

// lenIndex indexes a list ordered by lenBucket by length, so that finding a
// name there compares it only with the names as long as it.
type lenIndex struct {
	lens uint64 // bit lenBucket(n) for each length n in the list
	ends []int  // ends[r]: where the names of the r-th bucket present end
}

// lenBucket is a length, with all of 63 bytes or more sharing a bucket.
func lenBucket(n int) int { return min(n, 63) }

func (x *lenIndex) build(n int, length func(int) int) {
	x.lens, x.ends = 0, nil
	for i := range n {
		b := lenBucket(length(i))
		x.lens |= 1 << b
		if i+1 == n || lenBucket(length(i+1)) != b {
			x.ends = append(x.ends, i+1)
		}
	}
}

// has reports whether names n bytes long may be in the list.
func (x *lenIndex) has(n int) bool { return x.lens&(1<<lenBucket(n)) != 0 }

// span returns where in the list the names in n's bucket are.
func (x *lenIndex) span(n int) (lo, hi int) {
	bit := uint64(1) << lenBucket(n)
	if x.lens&bit == 0 {
		return 0, 0
	}
	r := bits.OnesCount64(x.lens & (bit - 1)) // buckets present below n's
	if r > 0 {
		lo = x.ends[r-1]
	}
	return lo, x.ends[r]
}

// Most objects share no first component with any entry of a list, most of
// the others differ from every entry that shares it at the level where
// those entries fork, and of the rest most lie under entries that are
// their first component alone. The methods below decide those from a few
// leading components, without comparing entries one by one. They rely on
// this: when an object's component at level k is complete and more of it
// follows (e[k] < len(o)), an entry that agrees with the object before k
// and differs at k has need e[k]+1, and every entry that agrees at k too
// has at least that need (it is decided at k or deeper) or -1. So the
// entries that differ at k neither match nor raise the need, and can be
// left out; if none agrees, the answer is "none", with need e[k]+1.

// rejects reports whether the object lies under none of g's entries
// because g is empty or no entry's first component is as long as the
// object's, and the need that fixes this. It is small enough to inline, so
// that most objects are decided without a call.
func (g *pathGroup) rejects(f *pathObj) (int, bool) {
	if len(g.specs) == 0 {
		return 0, true
	}
	if f.cut > 0 && !g.open && !g.firsts.lens.has(f.e0-f.s0) {
		return f.cut, true
	}
	return 0, false
}

// rejects reports whether the object differs from all of fc's entries at
// a level they share or at their fork, and the need that fixes this. The
// object's first component is fc's.
func (fc *firstComp) rejects(sp *split) (int, bool) {
	sp.fill(min(fc.fork+1, maxSplit))
	for k := 1; k <= fc.fork && k < sp.n; k++ {
		s, e := sp.s[k], sp.e[k]
		if e == len(sp.o) {
			return 0, false // the object may still grow: compare each entry
		}
		if k < fc.fork {
			if pc := &fc.specs[0]; pc.stars&(1<<k) == 0 && !sameComp(sp.o[s:e], pc.comps[k], pc.exact[k], sp.syn) {
				return e + 1, true
			}
		} else if fc.forks.names != nil && fc.forks.find(sp.o[s:e], sp.syn) < 0 {
			return e + 1, true
		}
	}
	return 0, false
}

// within reports whether the object lies under any of g's entries (no
// wildcards), and the need that fixes this: the weakest need of a match
// that stays a match, else the strongest of all the misses. Callers try
// rejects first.
func (g *pathGroup) within(f *pathObj) (bool, int) {
	var fc *firstComp
	if f.cut > 0 && !g.open {
		i := g.firsts.find(f.o[f.s0:f.e0], f.syn)
		if i < 0 {
			return false, f.cut // every entry differs in the first component
		}
		if fc = &g.byFirst[i]; fc.alone {
			return true, f.cut // the weakest match: nothing is weaker
		}
	}
	var sp split
	sp.init(f)
	specs, from := g.specs, 0
	if fc != nil {
		if n, ok := fc.rejects(&sp); ok {
			return false, n
		}
		specs, from = fc.specs, 1
	}
	found, best, need := false, -1, 0
	for i := range specs {
		ok, n := sp.match(&specs[i], from, false)
		switch {
		case ok && !found:
			found, best = true, n
		case ok:
			best = minNeed(best, n)
		default:
			need = maxNeed(need, n)
		}
	}
	if found {
		return true, best
	}
	return false, need
}

// firstUnder returns the config index of the first of g's entries that
// the object lies under, or -1, and the need that fixes which one it is.
// With wild, "*" in an entry matches any one component. Callers try
// rejects first.
func (g *pathGroup) firstUnder(f *pathObj, wild bool) (int, int) {
	var fc *firstComp
	if f.cut > 0 && !g.open {
		i := g.firsts.find(f.o[f.s0:f.e0], f.syn)
		if i < 0 {
			return -1, f.cut // every entry differs in the first component
		}
		fc = &g.byFirst[i]
	}
	var sp split
	sp.init(f)
	specs, from := g.specs, 0
	if fc != nil {
		if n, ok := fc.rejects(&sp); ok {
			return -1, n
		}
		specs, from = fc.specs, 1
	}
	need := 0
	for i := range specs {
		ok, n := sp.match(&specs[i], from, wild)
		need = maxNeed(need, n)
		if ok {
			return int(specs[i].index), need
		}
	}
	return -1, need
}

// parsePathSpec compiles one system_space (wild false) or private_folders
// (wild true) entry; it returns a message for the config error.
func parsePathSpec(raw string, wild bool) (pathSpec, string) {
	k, drive, off, _ := pathRoot(raw)
	switch {
	case k == rootNone && len(raw) >= 2 && raw[0] == '\\' && synWin.sep(raw[1]):
		return pathSpec{}, "is a Windows device path (want C:\\... or \\\\server\\share\\...)"
	case k == rootNone:
		return pathSpec{}, `is not an absolute path (want /..., C:\... or \\server\share\...)`
	case k == rootUNC && !wild:
		return pathSpec{}, "is a UNC path, which is network space, never system space"
	}
	syn := k.syntax()
	rest := raw[off:]
	var comps, exact []string
	for len(rest) > 0 {
		i := 0
		for i < len(rest) && !syn.sep(rest[i]) {
			i++
		}
		c := rest[:i]
		switch {
		case c == "" && i < len(rest):
			return pathSpec{}, "has an empty path component (a doubled separator)"
		case c == "." || c == "..":
			return pathSpec{}, `has a "." or ".." component (want a canonical path)`
		case strings.Contains(c, "*") && !wild:
			return pathSpec{}, "has a wildcard * (system space entries are plain prefixes)"
		case strings.Contains(c, "*") && c != "*":
			return pathSpec{}, "has * inside a component (want * alone as a whole component, as in /home/*/.ssh/)"
		}
		exact = append(exact, c)
		if syn == synWin {
			c = lowerString(c)
		}
		comps = append(comps, c)
		if i == len(rest) {
			break
		}
		rest = rest[i+1:]
	}
	if k == rootUNC && (len(comps) == 0 || comps[0] == "*") {
		return pathSpec{}, `names no server (want \\server\share\...)`
	}
	var stars uint64
	for k, c := range comps {
		if c == "*" && k < maxSplit {
			stars |= 1 << k
		}
	}
	return pathSpec{slot: uint8(rootSlot(k, drive)), comps: comps, exact: exact, stars: stars, tail: tailOf(exact, syn, wild)}, ""
}

// hive is a registry hive as the protected list names it.
type hive uint8

const (
	hiveHKLM hive = iota
	hiveHKCU
)

// regRoot says where a request's key lands in canonical terms: hive and
// the folded subkeys the request's hive token stands for. id is the root's
// slot in the compiled protected_registry (pathList.addReg).
type regRoot struct {
	id   int
	hive hive
	base []string
}

// regRoots are every root a key can land in.
var regRoots = [...]regRoot{
	{0, hiveHKLM, nil},
	{1, hiveHKCU, nil},
	{2, hiveHKCU, []string{"software", "classes"}},
	{3, hiveHKLM, []string{"software", "classes"}},
	{4, hiveHKLM, []string{"system", "currentcontrolset", "hardware profiles", "current"}},
}

var (
	rootsHKLM    = regRoots[0:1]
	rootsHKCU    = regRoots[1:2]
	rootsClasses = regRoots[2:3]
	// HKCR is a merged view of both Classes trees; a write lands in one of
	// them, so a key there is protected when either is.
	rootsHKCR = []regRoot{regRoots[3], regRoots[2]}
	rootsHKCC = regRoots[4:5]
)

// regEntry is a parsed protected_registry entry.
type regEntry struct {
	hive  hive
	comps []string // folded
	exact []string // as configured
}

// addReg adds a protected_registry entry to l, keyed by registry root: for
// each root, the entries that concern it, relative to the root. An entry
// of the other hive, or beside the root (HKLM\SYSTEM for HKLM's Classes),
// can never match a key there, and costs nothing; one that covers the
// whole root has no components left.
func (l *pathList) addReg(en regEntry, index int) {
	for _, r := range regRoots {
		n := min(len(r.base), len(en.comps))
		if en.hive != r.hive || !slices.Equal(en.comps[:n], r.base[:n]) {
			continue
		}
		l.add(pathSpec{index: int32(index), slot: uint8(r.id), comps: en.comps[n:], exact: en.exact[n:], tail: tailOf(en.exact[n:], synReg, false)})
	}
}

// parseHive finds which canonical roots key's hive token stands for, where
// the subkeys start, and the need that fixes the mapping. Besides the
// HKLM/HKCU short and long forms it understands the aliases under which
// the same keys can be written: HKEY_USERS\<sid> (any user's HKCU, and
// <sid>_Classes for its Classes), HKCR, HKCC and the kernel's \REGISTRY\
// names. ok is false for anything else.
func parseHive(key string) (roots []regRoot, off, need int, ok bool) {
	s, e, ok := compAt(key, 0, synReg)
	if !ok {
		return nil, 0, -1, false
	}
	tok := key[s:e]
	user := false // a SID component follows
	switch {
	case equalFold(tok, "hkcu"), equalFold(tok, "hkey_current_user"):
		roots = rootsHKCU
	case equalFold(tok, "hklm"), equalFold(tok, "hkey_local_machine"):
		roots = rootsHKLM
	case equalFold(tok, "hkcr"), equalFold(tok, "hkey_classes_root"):
		roots = rootsHKCR
	case equalFold(tok, "hkcc"), equalFold(tok, "hkey_current_config"):
		roots = rootsHKCC
	case equalFold(tok, "hku"), equalFold(tok, "hkey_users"):
		user = true
	case equalFold(tok, "registry"):
		s, e, ok = compAt(key, e, synReg)
		switch {
		case !ok:
			return nil, 0, -1, false
		case equalFold(key[s:e], "machine"):
			roots = rootsHKLM
		case equalFold(key[s:e], "user"):
			user = true
		default:
			return nil, 0, -1, false
		}
	default:
		return nil, 0, -1, false
	}
	if user {
		s, e, ok = compAt(key, e, synReg)
		if !ok {
			return nil, 0, -1, false
		}
		const classes = "_classes"
		if sid := key[s:e]; len(sid) > len(classes) && equalFold(sid[len(sid)-len(classes):], classes) {
			roots = rootsClasses
		} else {
			roots = rootsHKCU
		}
	}
	if e < len(key) {
		return roots, e, e + 1, true
	}
	return roots, e, -1, true // "HKLM" could still become "HKLMX"
}

// parseRegEntry compiles one protected_registry entry.
func parseRegEntry(raw string) (regEntry, string) {
	tok, rest, _ := strings.Cut(raw, `\`)
	var h hive
	switch {
	case equalFold(tok, "hklm"), equalFold(tok, "hkey_local_machine"):
		h = hiveHKLM
	case equalFold(tok, "hkcu"), equalFold(tok, "hkey_current_user"):
		h = hiveHKCU
	default:
		return regEntry{}, `does not start with HKLM\ or HKCU\ (or HKEY_LOCAL_MACHINE\, HKEY_CURRENT_USER\)`
	}
	var comps, exact []string
	for rest != "" {
		c, after, found := strings.Cut(rest, `\`)
		if c == "" {
			return regEntry{}, "has an empty key name (a doubled backslash)"
		}
		comps, exact = append(comps, lowerString(c)), append(exact, c)
		if !found {
			break
		}
		rest = after
	}
	return regEntry{hive: h, comps: comps, exact: exact}, ""
}

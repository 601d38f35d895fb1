package policy

import (
	"strings"
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

func (s syntax) sep(b byte) bool {
	switch s {
	case synLinux:
		return b == '/'
	case synWin:
		return b == '/' || b == '\\'
	}
	return b == '\\'
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
// more bytes could turn into a name.
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

// matchComps reports whether the components of o from byte off on start
// with comps (already folded; "*" matches any one component when wild), so
// that o is the folder comps names or lies under it, and the need that
// fixes this outcome.
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

// pathSpec is a compiled system-space prefix or private-folder pattern.
type pathSpec struct {
	raw   string // as configured, for reasons
	root  rootKind
	drive byte
	comps []string // folded for Windows; "*" is a wildcard in patterns
}

// sameRoot reports whether o's root can match s; when it cannot, the root
// need (already part of every decision) fixes the mismatch.
func (s *pathSpec) sameRoot(k rootKind, drive byte) bool {
	return s.root == k && (k != rootDrive || s.drive == drive)
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
	var comps []string
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
	return pathSpec{raw: raw, root: k, drive: drive, comps: comps}, ""
}

// Registry hives as the protected list names them.
const (
	hiveHKLM = "hklm"
	hiveHKCU = "hkcu"
)

// regRoot says where a request's key lands in canonical terms: hive and
// the folded subkeys the request's hive token stands for.
type regRoot struct {
	hive string
	base []string
}

var (
	classesBase  = []string{"software", "classes"}
	rootsHKLM    = []regRoot{{hiveHKLM, nil}}
	rootsHKCU    = []regRoot{{hiveHKCU, nil}}
	rootsClasses = []regRoot{{hiveHKCU, classesBase}}
	// HKCR is a merged view of both Classes trees; a write lands in one of
	// them, so a key there is protected when either is.
	rootsHKCR = []regRoot{{hiveHKLM, classesBase}, {hiveHKCU, classesBase}}
	rootsHKCC = []regRoot{{hiveHKLM, []string{"system", "currentcontrolset", "hardware profiles", "current"}}}
)

// regEntry is a compiled protected_registry entry.
type regEntry struct {
	raw   string
	hive  string
	comps []string // folded
}

// parseHive finds which canonical roots key's hive token stands for, where
// the subkeys start, and the need that fixes the mapping. Besides the
// HKLM/HKCU short and long forms it understands the aliases under which
// the same keys can be written: HKEY_USERS\<sid> (any user's HKCU, and
// <sid>_Classes for its Classes), HKCR, HKCC and the kernel's \REGISTRY\
// names. ok is false for anything else.
func parseHive(key string) (roots []regRoot, off, need int, ok bool) {
	s, e, ok := nextComp(key, 0, synReg)
	if !ok {
		return nil, 0, -1, false
	}
	tok := key[s:e]
	user := false // a SID component follows
	switch {
	case equalFold(tok, "hklm"), equalFold(tok, "hkey_local_machine"):
		roots = rootsHKLM
	case equalFold(tok, "hkcu"), equalFold(tok, "hkey_current_user"):
		roots = rootsHKCU
	case equalFold(tok, "hkcr"), equalFold(tok, "hkey_classes_root"):
		roots = rootsHKCR
	case equalFold(tok, "hkcc"), equalFold(tok, "hkey_current_config"):
		roots = rootsHKCC
	case equalFold(tok, "hku"), equalFold(tok, "hkey_users"):
		user = true
	case equalFold(tok, "registry"):
		s, e, ok = nextComp(key, e, synReg)
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
		s, e, ok = nextComp(key, e, synReg)
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

// matchEntry matches a protected entry against a key under root r.
func matchEntry(key string, off int, r regRoot, en *regEntry) (bool, int) {
	if en.hive != r.hive {
		return false, 0
	}
	n := min(len(r.base), len(en.comps))
	for j := 0; j < n; j++ {
		if r.base[j] != en.comps[j] {
			return false, 0 // the entry lies beside this root
		}
	}
	if len(en.comps) <= len(r.base) {
		return true, 0 // the entry covers the whole root
	}
	return matchComps(key, off, synReg, en.comps[len(r.base):], false)
}

// parseRegEntry compiles one protected_registry entry.
func parseRegEntry(raw string) (regEntry, string) {
	tok, rest, _ := strings.Cut(raw, `\`)
	var hive string
	switch {
	case equalFold(tok, "hklm"), equalFold(tok, "hkey_local_machine"):
		hive = hiveHKLM
	case equalFold(tok, "hkcu"), equalFold(tok, "hkey_current_user"):
		hive = hiveHKCU
	default:
		return regEntry{}, `does not start with HKLM\ or HKCU\ (or HKEY_LOCAL_MACHINE\, HKEY_CURRENT_USER\)`
	}
	var comps []string
	for rest != "" {
		c, after, found := strings.Cut(rest, `\`)
		if c == "" {
			return regEntry{}, "has an empty key name (a doubled backslash)"
		}
		comps = append(comps, lowerString(c))
		if !found {
			break
		}
		rest = after
	}
	return regEntry{raw: raw, hive: hive, comps: comps}, ""
}

package policy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

// The matchers take shortcuts: digests of first components and of the
// levels where entries fork, a split of the object kept across entries,
// entries' spelled-out tails, and needs rounded up to component ends. These
// tests check every shortcut against the plain definition, written the way
// the policy first was: each entry of a list matched with matchComps, in
// config order, its need exact. Needs are compared as the scopes they
// become.

// refLists is a config's lists compiled without shortcuts.
type refLists struct {
	sys, priv []pathSpec
	reg       []regEntry
	apps      []string
}

func newRefLists(t *testing.T, c Config) refLists {
	t.Helper()
	var r refLists
	for _, s := range c.SystemSpace {
		spec, msg := parsePathSpec(s, false)
		if msg != "" {
			t.Fatalf("%q: %s", s, msg)
		}
		r.sys = append(r.sys, spec)
	}
	for _, s := range c.PrivateFolders {
		spec, msg := parsePathSpec(s, true)
		if msg != "" {
			t.Fatalf("%q: %s", s, msg)
		}
		r.priv = append(r.priv, spec)
	}
	for _, s := range c.ProtectedRegistry {
		en, msg := parseRegEntry(s)
		if msg != "" {
			t.Fatalf("%q: %s", s, msg)
		}
		r.reg = append(r.reg, en)
	}
	r.apps = c.GuardedApps
	return r
}

func (r *refLists) inSystem(o string, fs abi.FSKind) (bool, int) {
	k, drive, off, _ := pathRoot(o)
	if fs != abi.FSLocal || k == rootUNC {
		return false, 0
	}
	found, best, need := false, -1, 0
	for _, s := range r.sys {
		if int(s.slot) != rootSlot(k, drive) {
			continue
		}
		ok, n := matchComps(o, off, k.syntax(), s.comps, false)
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

func (r *refLists) private(o string) (int, int) {
	k, drive, off, _ := pathRoot(o)
	need := 0
	for i, s := range r.priv {
		if int(s.slot) != rootSlot(k, drive) {
			continue
		}
		ok, n := matchComps(o, off, k.syntax(), s.comps, true)
		need = maxNeed(need, n)
		if ok {
			return i, need
		}
	}
	return -1, need
}

// registry returns the first protected entry the key is under, in root
// order and then config order, and the need.
func (r *refLists) registry(key string) (int, int, bool) {
	roots, off, need, ok := parseHive(key)
	if !ok {
		return -1, 0, false
	}
	for _, root := range roots {
		for i, en := range r.reg {
			if en.hive != root.hive {
				continue
			}
			n := min(len(root.base), len(en.comps))
			if strings.Join(en.comps[:n], `\`) != strings.Join(root.base[:n], `\`) {
				continue // beside the root
			}
			ok, m := true, 0
			if len(en.comps) > len(root.base) {
				ok, m = matchComps(key, off, synReg, en.comps[len(root.base):], false)
			}
			need = maxNeed(need, m)
			if ok {
				return i, need, true
			}
		}
	}
	return -1, need, true
}

func (r *refLists) guardedApp(name string, win bool) bool {
	for _, a := range r.apps {
		exe := len(a) > 4 && equalFold(a[len(a)-4:], ".exe")
		if exe || win {
			if equalFold(name, a) {
				return true
			}
		} else if name == a {
			return true
		}
	}
	return false
}

func TestMatchersAgainstDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 17))
	configs := []Config{DefaultConfig(), customConfig()}
	for range 200 {
		configs = append(configs, randConfig(rng))
	}
	n := 400
	if testing.Short() {
		n = 60
	}
	for ci, c := range configs {
		p, err := New(c)
		if err != nil {
			t.Fatalf("config %d: %v", ci, err)
		}
		ref := newRefLists(t, c)
		var entries []string
		entries = append(entries, c.SystemSpace...)
		entries = append(entries, c.PrivateFolders...)
		entries = append(entries, c.ProtectedRegistry...)
		for range n {
			o := randObjectNear(rng, entries)
			if o == "" {
				continue
			}
			checkMatchers(t, p, &ref, o, abi.FSKind(rng.IntN(3)))
		}
	}
}

func checkMatchers(t *testing.T, p *Policy, ref *refLists, o string, fs abi.FSKind) {
	t.Helper()
	var f pathObj
	if f.parse(o) {
		syn := f.syn
		gotSys, gotN := p.inSystem(&f, fs)
		wantSys, wantN := ref.inSystem(o, fs)
		if gotSys != wantSys || prefixScope(o, gotN, syn) != prefixScope(o, wantN, syn) {
			t.Fatalf("inSystem(%q, %s) = %v, %d; want %v, %d", o, fs, gotSys, gotN, wantSys, wantN)
		}
		gotI, gotN := p.private(&f)
		wantI, wantN := ref.private(o)
		// The policy's private folder index is the config index.
		if gotI != wantI || prefixScope(o, gotN, syn) != prefixScope(o, wantN, syn) {
			t.Fatalf("private(%q) = %d, %d; want %d, %d", o, gotI, gotN, wantI, wantN)
		}
	}
	if wantI, wantN, ok := ref.registry(o); ok {
		req := abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: ZoneGuarded, State: "1:x", Object: o}
		got := p.Decide(&req)
		want := RuleAllowRegistry
		if wantI >= 0 {
			want = RuleRegistryProtected
			if got.Reason != withOrigin(p.regReason[wantI], zoneGuarded, req.State) {
				t.Fatalf("registry %q: reason %q, want entry %d", o, got.Reason, wantI)
			}
		}
		sc := prefixScope(o, wantN, synReg)
		if got.Rule != want || got.Scope.Object != sc.Object || got.Scope.PrefixLen != sc.PrefixLen {
			t.Fatalf("registry %q: %+v, want %s with need %d", o, got, want, wantN)
		}
	}
	name, win := baseName(o), isWindowsPath(o)
	if got, want := p.guardedApp(name, win), ref.guardedApp(name, win); got != want {
		t.Fatalf("guardedApp(%q, %v) = %v, want %v", name, win, got, want)
	}
}

// randConfig returns a config with random lists that overlap, nest, share
// prefixes, use wildcards, both slashes and cases, and go deeper than a
// split keeps.
func randConfig(rng *rand.Rand) Config {
	c := DefaultConfig()
	comp := func(wild bool) string {
		names := []string{"usr", "us", "usrx", "bin", "home", "Home", "*", "a", "b", ".ssh", "Windows", "WINDOWS", "Users", "x", "lib", "lib64"}
		for {
			if n := names[rng.IntN(len(names))]; wild || n != "*" {
				return n
			}
		}
	}
	path := func(wild bool) string {
		root := []string{"/", "/", `C:\`, `c:/`, `D:\`, `\\srv\`}[rng.IntN(6)]
		if root == `\\srv\` && !wild {
			root = "/"
		}
		sep := "/"
		if strings.HasPrefix(root, `C:\`) || strings.HasPrefix(root, `D:\`) || strings.HasPrefix(root, `\\`) {
			sep = `\`
		}
		depth := rng.IntN(4)
		if rng.IntN(8) == 0 {
			depth = maxSplit + rng.IntN(4)
		}
		var parts []string
		for range depth {
			parts = append(parts, comp(wild))
		}
		if root == `\\srv\` && len(parts) > 0 && parts[0] == "*" {
			parts[0] = "srv"
		}
		s := root + strings.Join(parts, sep)
		if len(parts) > 0 && rng.IntN(2) == 0 {
			s += sep
		}
		return s
	}
	c.SystemSpace, c.PrivateFolders, c.ProtectedRegistry = nil, nil, nil
	for range rng.IntN(12) {
		c.SystemSpace = append(c.SystemSpace, path(false))
	}
	for range rng.IntN(10) {
		c.PrivateFolders = append(c.PrivateFolders, path(true))
	}
	for range rng.IntN(10) {
		key := []string{`HKLM\`, `HKCU\`, `HKEY_CURRENT_USER\`}[rng.IntN(3)]
		depth := rng.IntN(5)
		if rng.IntN(8) == 0 {
			depth = maxSplit + rng.IntN(4)
		}
		var parts []string
		for range depth {
			parts = append(parts, []string{"Software", "SOFTWARE", "Classes", "Microsoft", "Run", "RunOnce", "*", ".", "SYSTEM", "CurrentControlSet", "Hardware Profiles", "Current", "x"}[rng.IntN(13)])
		}
		c.ProtectedRegistry = append(c.ProtectedRegistry, key+strings.Join(parts, `\`))
	}
	if rng.IntN(2) == 0 {
		c.GuardedApps = append(c.GuardedApps, "bash", "Bash.EXE", strings.Repeat("a", 70), strings.Repeat("a", 64))
	}
	return c
}

// randObjectNear returns a random object, often one built from a
// configured entry: cut, extended, recased or with other slashes.
func randObjectNear(rng *rand.Rand, entries []string) string {
	if len(entries) == 0 || rng.IntN(3) == 0 {
		return randObject(rng)
	}
	s := strings.ReplaceAll(entries[rng.IntN(len(entries))], "*", tokens[rng.IntN(len(tokens))])
	switch rng.IntN(6) {
	case 0:
		s = s[:rng.IntN(len(s)+1)]
	case 1:
		s = strings.ToUpper(s)
	case 2:
		s = strings.ReplaceAll(s, `\`, "/")
	case 3:
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	return s + randSuffix(rng)
}

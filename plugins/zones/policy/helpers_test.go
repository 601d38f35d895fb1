package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

// Test helpers shared by the table, scope and fuzz tests.

func mustNew(tb testing.TB, c Config) *Policy {
	tb.Helper()
	p, err := New(c)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return p
}

// customConfig exercises what the defaults do not: a private folder inside
// system space, overlapping system prefixes, a wildcard at the top, a UNC
// pattern, nested and aliased registry entries, runs of ports.
func customConfig() Config {
	c := DefaultConfig()
	c.SystemSpace = append(c.SystemSpace, "/usr/local/", "/srv/apps", `D:\Tools\`)
	c.PrivateFolders = append(c.PrivateFolders, "/etc/ssl/private/", "/*/secret/", `\\files\hr\*\`, "/opt/vendor/*/keys/")
	c.ProtectedRegistry = append([]string{`HKLM\Software\Vendor\Locked`}, c.ProtectedRegistry...)
	c.ProtectedRegistry = append(c.ProtectedRegistry, `HKCU\Software\Classes\CLSID\Special`, `HKEY_CURRENT_USER\Software\Policies`)
	c.GuardedTCPPorts = append(c.GuardedTCPPorts, 8000, 8001, 8002, 8003, 65535, 1)
	c.GuardedUDPPorts = append(c.GuardedUDPPorts, 124, 125)
	return c
}

var (
	zonePool  = []string{ZoneSystem, ZoneGuarded, ZoneUntrusted, "quarantine", ""}
	statePool = []string{
		"", "1:firefox.exe", "1i:OUTLOOK.EXE", "1u:evince", "1iu:vlc", "1:payload", "1i:payload.sh",
		"garbage", "1:", "1i:\xff", "2:x", "1ui:x", "1i:" + strings.Repeat("a", 300),
	}
	// tokens build random paths and keys that hit the configured lists'
	// edges: separators, dot components, case variants, near misses.
	tokens = []string{
		"/", "/", "/", `\`, `\`, `\\`, ".", "..", "*", "x", "bob", "a b", "é", "\xff", ":", "~1",
		".ssh", ".SSH", ".sshx", ".gnupg", "Documents", "documents", "Private", "PRIVATE", "Privat",
		"home", "root", "usr", "usrx", "us", "local", "etc", "ssl", "private", "secret", "opt", "vendor", "keys",
		"C:", "c:", "D:", "Users", "Windows", "WINDOWS", "Window", "Program Files", "Program Files (x86)", "Program",
		"HKLM", "hkcu", "HKCU", "HKEY_LOCAL_MACHINE", "HKEY_CURRENT_USER", "HKU", "HKEY_USERS", "HKCR", "HKCC",
		"REGISTRY", "MACHINE", "USER", "S-1-5-21-1", "S-1-5-21-1_Classes", "Software", "SOFTWARE", "Microsoft",
		"Windows NT", "CurrentVersion", "Run", "RunOnce", "Runonce", "RunX", "Policies", "Winlogon",
		"Environment", "Classes", "CLSID", "Special", "Vendor", "Locked", "files", "hr", "srv", "apps", "Tools",
		"?", "tmp", "bin", "lib64",
	}
	roots = []string{
		"/", "/", "C:\\", "c:/", "C:/", "D:\\", `\\srv\share\`, `\\files\hr\`, `\\?\`, `\\.\`, `\\`, "", "rel/", "C:",
		`HKLM\`, `HKCU\`, `hkey_current_user\`, `HKU\S-1-5-21-1\`, `HKEY_USERS\S-1-5-21-1_Classes\`, `HKCR\`, `HKCC\`,
		`\REGISTRY\USER\S-1-5-18\`, `\REGISTRY\MACHINE\`, `HKLM`, "/usr/", "/home/bob/", `C:\Users\bob\`,
	}
)

// randSuffix returns 0..7 random tokens.
func randSuffix(rng *rand.Rand) string {
	var b strings.Builder
	for n := rng.IntN(8); n > 0; n-- {
		b.WriteString(tokens[rng.IntN(len(tokens))])
	}
	return b.String()
}

func randObject(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		return interesting[rng.IntN(len(interesting))]
	}
	return roots[rng.IntN(len(roots))] + randSuffix(rng)
}

func randState(rng *rand.Rand) string {
	if rng.IntN(3) == 0 {
		return state{inherited: rng.IntN(2) == 0, unknown: rng.IntN(2) == 0, origin: sanitize(randSuffix(rng), maxOrigin)}.encode()
	}
	return statePool[rng.IntN(len(statePool))]
}

var protos = []abi.Proto{abi.ProtoNone, abi.ProtoTCP, abi.ProtoUDP}

func randPort(rng *rand.Rand) uint16 {
	if rng.IntN(2) == 0 {
		ports := []uint16{0, 1, 22, 25, 53, 80, 123, 124, 443, 444, 993, 994, 995, 996, 4444, 8000, 8003, 65534, 65535}
		return ports[rng.IntN(len(ports))]
	}
	return uint16(rng.IntN(65536))
}

// randRequest draws a request from the whole space: every op (and an
// invalid one), every zone, interesting and random objects.
func randRequest(rng *rand.Rand) abi.DecideRequest {
	req := abi.DecideRequest{
		Op:    abi.Op(rng.IntN(14)),
		Zone:  zonePool[rng.IntN(len(zonePool))],
		State: randState(rng),
		FS:    abi.FSKind(rng.IntN(3)),
		Proto: protos[rng.IntN(3)],
		Port:  randPort(rng),
	}
	if rng.IntN(3) > 0 { // mostly local, as on real machines
		req.FS = abi.FSLocal
	}
	req.Object = randObject(rng)
	req.Addr[15] = byte(rng.IntN(256))
	req.TargetZone = zonePool[rng.IntN(len(zonePool))]
	return req
}

// neighbour returns a request that resp's scope claims to cover: same op,
// subjects and objects drawn as the scope allows.
func neighbour(rng *rand.Rand, req *abi.DecideRequest, sc abi.Scope) abi.DecideRequest {
	nb := *req
	switch sc.Subject {
	case abi.SubjectZone:
		nb.State = randState(rng)
	case abi.SubjectAll:
		nb.Zone = zonePool[rng.IntN(len(zonePool))]
		nb.State = randState(rng)
	}
	switch sc.Object {
	case abi.ObjectPrefix:
		// The host keys a prefix on the filesystem kind too; fields the
		// op does not use may be anything.
		nb.Object = req.Object[:sc.PrefixLen] + randSuffix(rng)
		nb.Proto, nb.Port, nb.TargetZone = protos[rng.IntN(3)], randPort(rng), zonePool[rng.IntN(len(zonePool))]
	case abi.ObjectPortRange:
		nb.Port = sc.PortLo + uint16(rng.IntN(int(sc.PortHi-sc.PortLo)+1))
		nb.Addr[15] = byte(rng.IntN(256))
		nb.Object, nb.FS, nb.TargetZone = randObject(rng), abi.FSKind(rng.IntN(3)), zonePool[rng.IntN(len(zonePool))]
	case abi.ObjectAny:
		nb.Object, nb.FS = randObject(rng), abi.FSKind(rng.IntN(3))
		nb.Proto, nb.Port = protos[rng.IntN(3)], randPort(rng)
		nb.Addr[15] = byte(rng.IntN(256))
		nb.TargetZone = zonePool[rng.IntN(len(zonePool))]
	}
	return nb
}

func describe(r *abi.DecideRequest) string {
	return fmt.Sprintf("%s zone=%q state=%q object=%q fs=%s proto=%s port=%d", r.Op, r.Zone, r.State, r.Object, r.FS, r.Proto, r.Port)
}

// checkAnswer checks one answer the way the host and the conformance
// suite will: well formed, a scope that holds its own request, and the
// same verdict, rule and reason for n requests inside that scope.
func checkAnswer(tb testing.TB, p *Policy, req *abi.DecideRequest, resp abi.DecideResponse, rng *rand.Rand, n int) {
	tb.Helper()
	if err := resp.Validate(); err != nil {
		tb.Fatalf("%s: invalid answer: %v", describe(req), err)
	}
	if err := resp.CheckScope(req); err != nil {
		tb.Fatalf("%s: scope does not hold the request: %v", describe(req), err)
	}
	if resp.Verdict == abi.Allow && resp.Rule != RuleAllowSystem && !strings.HasPrefix(resp.Rule, "allow.") ||
		resp.Verdict == abi.Deny && strings.HasPrefix(resp.Rule, "allow.") {
		tb.Fatalf("%s: verdict %s with rule %s", describe(req), resp.Verdict, resp.Rule)
	}
	if resp.Scope.Subject == abi.SubjectAll {
		// Other plugins' zones get an abstention, so no answer of this
		// policy holds for every subject.
		tb.Fatalf("%s: claims all subjects", describe(req))
	}
	for range n {
		nb := neighbour(rng, req, resp.Scope)
		got := p.Decide(&nb)
		if got.Verdict != resp.Verdict || got.Rule != resp.Rule || got.Reason != resp.Reason {
			tb.Fatalf("scope %+v of\n\t%s\n\t-> %s %s %q\nis not truthful for\n\t%s\n\t-> %s %s %q",
				resp.Scope, describe(req), resp.Verdict, resp.Rule, resp.Reason,
				describe(&nb), got.Verdict, got.Rule, got.Reason)
		}
	}
}

// interesting objects: every default list entry and its near misses.
var interesting = func() []string {
	var out []string
	c := customConfig()
	for _, s := range append(c.SystemSpace, c.PrivateFolders...) {
		t := strings.ReplaceAll(s, "*", "bob")
		out = append(out, t, t+"x", strings.TrimRight(t, `/\`), strings.TrimRight(t, `/\`)+"x", t+"a/b", strings.ToUpper(t)+"A", t[:len(t)/2])
	}
	for _, s := range c.ProtectedRegistry {
		out = append(out, s, s+"x", strings.TrimRight(s, `\`)+`\sub`, strings.TrimRight(s, `\`)+"x", strings.ToLower(s), s[:len(s)/2])
	}
	return append(out,
		"/usr/bin/bash", "/home/bob/.ssh/id_rsa", "/home/bob/.sshx", "/tmp/x", "/usr", "/us", "/",
		`C:\Windows\System32\evil.dll`, `C:\Users\bob\AppData\Local\Temp\payload.exe`, `\\server\share\x.exe`,
		`\\?\C:\Windows\x`, "", "relative", `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`,
		`HKU\S-1-5-21-1\Software\Microsoft\Windows\CurrentVersion\Run\x`, `HKCR\CLSID\{x}\InprocServer32`,
		`HKCU\Software\Foo`, `HKXX\x`,
	)
}()

func newRand() *rand.Rand { return rand.New(rand.NewPCG(7, 11)) }

func absReq(exe string) *abi.ClassifyRequest {
	return &abi.ClassifyRequest{Exe: exe, CreatorZone: ZoneSystem}
}

// decideReq builds a guarded request; net ops use TCP except net.send.
func decideReq(op, obj string, port uint16) abi.DecideRequest {
	o, err := abi.ParseOp(op)
	if err != nil {
		panic(err)
	}
	req := abi.DecideRequest{Op: o, Zone: ZoneGuarded, State: "1:mutt", Object: obj, Port: port, Proto: abi.ProtoTCP}
	if o == abi.OpNetSend {
		req.Proto = abi.ProtoUDP
	}
	return req
}

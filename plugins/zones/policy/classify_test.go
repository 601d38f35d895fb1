package policy

import (
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

func TestClassify(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	const (
		outlook = `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`
		pwsh    = `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`
		payload = `C:\Users\bob\AppData\Local\Temp\payload.exe`
	)
	tests := []struct {
		name string
		req  abi.ClassifyRequest
		zone string
		inh  bool
		st   string
		rule string
		why  string // part of the reason
	}{
		{"system space", abi.ClassifyRequest{Exe: "/usr/bin/bash", CreatorZone: ZoneSystem, CreatorExe: "/usr/sbin/sshd"},
			ZoneSystem, false, "", RuleZoneSystemSpace, "system space"},
		{"system space windows", abi.ClassifyRequest{Exe: pwsh, CreatorZone: ZoneSystem, CreatorExe: `C:\Windows\explorer.exe`},
			ZoneSystem, false, "", RuleZoneSystemSpace, "system space"},
		{"guarded app", abi.ClassifyRequest{Exe: outlook, CreatorZone: ZoneSystem, CreatorExe: `C:\Windows\explorer.exe`},
			ZoneGuarded, false, "1:OUTLOOK.EXE", RuleZoneGuardedApp, "OUTLOOK.EXE is a guarded app"},
		{"guarded app linux", abi.ClassifyRequest{Exe: "/usr/lib/firefox/firefox", CreatorZone: ZoneSystem},
			ZoneGuarded, false, "1:firefox", RuleZoneGuardedApp, "firefox is a guarded app"},
		{"linux names are case-sensitive", abi.ClassifyRequest{Exe: "/usr/lib/firefox/Firefox", CreatorZone: ZoneSystem},
			ZoneSystem, false, "", RuleZoneSystemSpace, ""},
		{"exe names ignore case anywhere", abi.ClassifyRequest{Exe: "/opt/wine/drive_c/FIREFOX.EXE", CreatorZone: ZoneSystem},
			ZoneGuarded, false, "1:FIREFOX.EXE", RuleZoneGuardedApp, ""},
		{"windows paths ignore case", abi.ClassifyRequest{Exe: `C:\Program Files\VideoLAN\VLC`, CreatorZone: ZoneSystem},
			ZoneGuarded, false, "1:VLC", RuleZoneGuardedApp, ""},
		{"forward slashes", abi.ClassifyRequest{Exe: `C:/Program Files/Mozilla Firefox/firefox.exe`, CreatorZone: ZoneSystem},
			ZoneGuarded, false, "1:firefox.exe", RuleZoneGuardedApp, ""},
		{"guarded app in user space", abi.ClassifyRequest{Exe: `C:\Users\bob\AppData\Local\Google\Chrome\chrome.exe`, CreatorZone: ZoneSystem},
			ZoneGuarded, false, "1:chrome.exe", RuleZoneGuardedApp, ""},
		{"user space", abi.ClassifyRequest{Exe: payload, CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:payload.exe", RuleZoneUserSpace, "user space"},
		{"network fs", abi.ClassifyRequest{Exe: "/usr/bin/tool", FS: abi.FSNetwork, CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:tool", RuleZoneUserSpace, "network"},
		{"unc", abi.ClassifyRequest{Exe: `\\server\share\tool.exe`, CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:tool.exe", RuleZoneUserSpace, "network"},
		{"removable", abi.ClassifyRequest{Exe: `C:\Windows\x.exe`, FS: abi.FSRemovable, CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:x.exe", RuleZoneUserSpace, "removable"},
		{"device path", abi.ClassifyRequest{Exe: `\\?\C:\Windows\x.exe`, CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:x.exe", RuleZoneUserSpace, "cannot lie in system space"},
		{"empty exe", abi.ClassifyRequest{CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "", RuleZoneUserSpace, "empty"},
		{"inherits guarded", abi.ClassifyRequest{Exe: pwsh, CreatorZone: ZoneGuarded, CreatorState: "1i:OUTLOOK.EXE", CreatorExe: `C:\x\AcroRd32.exe`},
			ZoneGuarded, true, "1i:OUTLOOK.EXE", RuleZoneInherited, "created by a guarded process; guarded because ancestor OUTLOOK.EXE is a guarded app"},
		{"inherits from the guarded app itself", abi.ClassifyRequest{Exe: pwsh, CreatorZone: ZoneGuarded, CreatorState: "1:OUTLOOK.EXE", CreatorExe: outlook},
			ZoneGuarded, true, "1i:OUTLOOK.EXE", RuleZoneInherited, "ancestor OUTLOOK.EXE"},
		{"guarded child in user space stays guarded", abi.ClassifyRequest{Exe: payload, CreatorZone: ZoneGuarded, CreatorState: "1:firefox.exe"},
			ZoneGuarded, true, "1i:firefox.exe", RuleZoneInherited, ""},
		{"inherits untrusted", abi.ClassifyRequest{Exe: "/usr/bin/curl", CreatorZone: ZoneUntrusted, CreatorState: "1:payload"},
			ZoneUntrusted, true, "1i:payload", RuleZoneInherited, "created by an untrusted process; untrusted because ancestor payload"},
		{"untrusted starting a guarded app", abi.ClassifyRequest{Exe: "/usr/bin/firefox", CreatorZone: ZoneUntrusted, CreatorState: "1i:payload"},
			ZoneUntrusted, true, "1i:payload", RuleZoneInherited, ""},
		{"foreign creator state", abi.ClassifyRequest{Exe: "/bin/sh", CreatorZone: ZoneGuarded, CreatorState: "other plugin", CreatorExe: "/usr/bin/evince"},
			ZoneGuarded, true, "1i:evince", RuleZoneInherited, "ancestor evince"},
		{"keeps the unknown mark of the origin", abi.ClassifyRequest{Exe: "/bin/sh", CreatorZone: ZoneGuarded, CreatorState: "1u:evince"},
			ZoneGuarded, true, "1iu:evince", RuleZoneInherited, "ancestry is unknown"},
		{"in place guarded", abi.ClassifyRequest{Flags: abi.FlagInPlace, Exe: "/usr/bin/python3", CreatorZone: ZoneGuarded, CreatorState: "1i:thunderbird", CreatorExe: "/bin/sh"},
			ZoneGuarded, true, "1i:thunderbird", RuleZoneInherited, "replaced its image while guarded"},
		{"in place untrusted", abi.ClassifyRequest{Flags: abi.FlagInPlace, Exe: "/usr/bin/python3", CreatorZone: ZoneUntrusted, CreatorState: "1:x"},
			ZoneUntrusted, true, "1i:x", RuleZoneInherited, "replaced its image while untrusted"},
		{"in place system to guarded app", abi.ClassifyRequest{Flags: abi.FlagInPlace, Exe: "/usr/bin/evince", CreatorZone: ZoneSystem, CreatorExe: "/bin/sh"},
			ZoneGuarded, false, "1:evince", RuleZoneGuardedApp, ""},
		{"in place system to system", abi.ClassifyRequest{Flags: abi.FlagInPlace, Exe: "/usr/bin/ls", CreatorZone: ZoneSystem},
			ZoneSystem, false, "", RuleZoneSystemSpace, ""},
		{"creator unknown system", abi.ClassifyRequest{Flags: abi.FlagCreatorUnknown, Exe: `C:\Windows\explorer.exe`},
			ZoneSystem, false, "1u:", RuleZoneSystemSpace, "creator unknown"},
		{"creator unknown guarded app", abi.ClassifyRequest{Flags: abi.FlagCreatorUnknown, Exe: "/usr/bin/thunderbird"},
			ZoneGuarded, false, "1u:thunderbird", RuleZoneGuardedApp, "creator unknown"},
		{"creator unknown ignores creator fields", abi.ClassifyRequest{Flags: abi.FlagCreatorUnknown, Exe: "/usr/bin/ls", CreatorZone: ZoneGuarded, CreatorState: "1:firefox"},
			ZoneSystem, false, "1u:", RuleZoneSystemSpace, "creator unknown"},
		{"creator without zone", abi.ClassifyRequest{Exe: "/usr/bin/ls"},
			ZoneSystem, false, "1u:", RuleZoneSystemSpace, "creator unknown"},
		{"unknown mark not copied from system", abi.ClassifyRequest{Exe: "/usr/bin/ls", CreatorZone: ZoneSystem, CreatorState: "1u:"},
			ZoneSystem, false, "", RuleZoneSystemSpace, ""},
		{"foreign creator zone", abi.ClassifyRequest{Exe: "/home/bob/go/bin/tool", CreatorZone: "developer", CreatorState: "x"},
			ZoneUntrusted, false, "1:tool", RuleZoneUserSpace, ""},
		{"origin sanitized", abi.ClassifyRequest{Exe: "/tmp/a\nb\xff\u202e", CreatorZone: ZoneSystem},
			ZoneUntrusted, false, "1:a\uFFFDb\uFFFD\uFFFD", RuleZoneUserSpace, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Classify(&tt.req)
			if err := got.Validate(); err != nil {
				t.Fatalf("invalid answer: %v", err)
			}
			if !got.Classified || got.Zone != tt.zone || got.Inherited() != tt.inh || got.State != tt.st || got.Rule != tt.rule {
				t.Errorf("got %+v\nwant zone %s inherited %v state %q rule %s", got, tt.zone, tt.inh, tt.st, tt.rule)
			}
			if !strings.Contains(got.Reason, tt.why) {
				t.Errorf("reason %q does not contain %q", got.Reason, tt.why)
			}
			if _, ok := parseState(got.State); !ok {
				t.Errorf("state %q does not parse", got.State)
			}
		})
	}
}

// TestGuardedAppsDefaults classifies every default guarded app, under
// the kinds of path each would run from.
func TestGuardedAppsDefaults(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	for _, name := range DefaultConfig().GuardedApps {
		paths := []string{"/usr/bin/" + name, "/opt/x/" + name}
		if strings.HasSuffix(name, ".exe") {
			paths = append(paths, `C:\Program Files\X\`+name, `C:\Program Files\X\`+strings.ToUpper(name), "C:/Program Files (x86)/x/"+name)
		}
		for _, exe := range paths {
			req := abi.ClassifyRequest{Exe: exe, CreatorZone: ZoneSystem}
			if got := p.Classify(&req); got.Zone != ZoneGuarded || got.Rule != RuleZoneGuardedApp {
				t.Errorf("%s: got %s (%s), want guarded", exe, got.Zone, got.Rule)
			}
		}
	}
}

// TestInheritanceDepth follows a chain of any length: guardedness and its
// origin never fade, whatever the descendants are called.
func TestInheritanceDepth(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	exes := []string{"/usr/bin/bash", "/usr/bin/python3", "/tmp/x", "/usr/bin/firefox", "/usr/bin/ls", `C:\Windows\System32\cmd.exe`}
	for _, first := range []struct{ exe, zone, origin string }{
		{"/usr/bin/thunderbird", ZoneGuarded, "thunderbird"},
		{"/home/bob/dl/payload", ZoneUntrusted, "payload"},
	} {
		req := abi.ClassifyRequest{Exe: first.exe, CreatorZone: ZoneSystem}
		cur := p.Classify(&req)
		curExe := first.exe
		for depth := 1; depth <= 50; depth++ {
			inPlace := depth%7 == 0
			req := abi.ClassifyRequest{Exe: exes[depth%len(exes)], CreatorZone: cur.Zone, CreatorState: cur.State, CreatorExe: curExe}
			if inPlace {
				req.Flags = abi.FlagInPlace
			}
			cur = p.Classify(&req)
			curExe = req.Exe
			if cur.Zone != first.zone || !cur.Inherited() || cur.State != "1i:"+first.origin {
				t.Fatalf("%s depth %d: got %+v", first.exe, depth, cur)
			}
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	for _, st := range []state{
		{}, {unknown: true}, {origin: "firefox.exe"}, {inherited: true, origin: "OUTLOOK.EXE"},
		{inherited: true, unknown: true, origin: "a:b"}, {unknown: true, origin: "x"}, {inherited: true},
		{origin: strings.Repeat("é", maxOrigin/2)},
	} {
		s := st.encode()
		got, ok := parseState(s)
		if !ok || got != st {
			t.Errorf("%+v encodes to %q, which parses to %+v, %v", st, s, got, ok)
		}
		if len(s) > abi.MaxState {
			t.Errorf("%q is longer than abi.MaxState", s)
		}
	}
	for _, s := range []string{"1:", "x", "1", "1x:a", "1ui:a", "2:a", "1:\xff", "1:a\nb", "1:" + strings.Repeat("a", maxOrigin+1)} {
		if st, ok := parseState(s); ok {
			t.Errorf("parseState(%q) = %+v, want not ok", s, st)
		}
	}
}

func TestOriginTruncated(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	exe := "/tmp/" + strings.Repeat("ü", 3000)
	got := p.Classify(&abi.ClassifyRequest{Exe: exe, CreatorZone: ZoneSystem})
	st, ok := parseState(got.State)
	if err := got.Validate(); err != nil || !ok || len(st.origin) > maxOrigin || !strings.HasSuffix(st.origin, "…") {
		t.Fatalf("got %q (%v, %v)", got.State, ok, err)
	}
	child := p.Classify(&abi.ClassifyRequest{Exe: "/bin/sh", CreatorZone: got.Zone, CreatorState: got.State, CreatorExe: exe})
	if child.State != "1i:"+st.origin {
		t.Errorf("child state %q", child.State)
	}
}

package policy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

// Objects by where they live, Linux and Windows, every default list entry.
var spaces = map[string][]struct {
	path string
	fs   abi.FSKind
}{
	"system": {
		{"/usr/bin/bash", 0}, {"/bin/sh", 0}, {"/sbin/init", 0}, {"/lib/x86_64-linux-gnu/libc.so.6", 0},
		{"/lib64/ld-linux-x86-64.so.2", 0}, {"/opt/app/bin/app", 0}, {"/etc/passwd", 0}, {"/boot/vmlinuz", 0},
		{"/usr", 0}, {"/usr/", 0}, {"//usr//bin/./env", 0},
		// Paths are taken literally: ".." is the host's to resolve (see
		// match.go), as its prefix cache could not honour it anyway.
		{"/usr/../tmp", 0},
		{`C:\Windows\System32\cmd.exe`, 0}, {`c:\windows\system32\CMD.EXE`, 0}, {`C:/Windows/System32/cmd.exe`, 0},
		{`C:\Windows`, 0}, {`C:\Program Files\App\app.exe`, 0}, {`C:\PROGRAM FILES\App\app.dll`, 0},
		{`C:\Program Files (x86)\Adobe\Acrobat Reader DC\Reader\AcroRd32.exe`, 0}, {`c:/program files (x86)/x.dll`, 0},
	},
	"user": {
		{"/home/bob/bin/tool", 0}, {"/tmp/x", 0}, {"/var/tmp/x", 0}, {"/dev/shm/x", 0}, {"/root/x", 0},
		{"/usrx/bin/a", 0}, {"/us", 0}, {"/home/bob/.sshx/a", 0}, {"/home/.ssh/x", 0}, {"/home/bob/x/.ssh/y", 0},
		{"/", 0},
		{`C:\Users\bob\AppData\Local\Temp\payload.exe`, 0}, {`D:\Windows\x.exe`, 0}, {`C:\Program Filesx\a`, 0},
		{`C:\ProgramData\x`, 0}, {`C:\Users\bob\Documents\Privatex\a`, 0}, {`C:\`, 0},
	},
	"network": {
		{"/usr/bin/bash", abi.FSNetwork}, {"/mnt/nfs/tool", abi.FSNetwork}, {`\\server\share\tool.exe`, 0},
		{`\\server\share\tool.exe`, abi.FSNetwork}, {`//server/share/x`, abi.FSNetwork}, {`C:\Windows\x.exe`, abi.FSNetwork},
	},
	"removable": {
		{"/media/usb/tool", abi.FSRemovable}, {"/usr/bin/bash", abi.FSRemovable}, {`E:\setup.exe`, abi.FSRemovable},
		{`C:\Program Files\x.exe`, abi.FSRemovable},
	},
	"private": {
		{"/home/bob/.ssh/id_rsa", 0}, {"/home/bob/.ssh", 0}, {"/home/bob/.ssh/", 0}, {"/home/alice/.gnupg/pubring.kbx", 0},
		{"/root/.ssh/authorized_keys", 0}, {"/home//bob/./.ssh/config", 0}, {"/home/bob/.ssh/id_rsa", abi.FSNetwork},
		{`C:\Users\bob\Documents\Private\a.txt`, 0}, {`c:/users/BOB/documents/PRIVATE/a.txt`, 0},
		{`C:\Users\bob\Documents\Private`, abi.FSRemovable},
	},
	"invalid": {
		{"", 0}, {"relative/path", 0}, {`C:relative`, 0}, {`\\?\C:\Windows\x.exe`, 0}, {`\\.\PhysicalDrive0`, 0},
		{`\Windows\x`, 0}, {"C", 0},
	},
}

// want[op][space] is the rule for the system, guarded and untrusted zones:
// REFERENCE-POLICY.md's table, row by row.
var want = map[abi.Op]map[string][3]string{
	abi.OpProcessExec: {
		"system":    {RuleAllowSystemSpace, RuleAllowSystemSpace, RuleExecUntrusted},
		"user":      {RuleExecZeroTrust, RuleExecZeroTrust, RuleExecZeroTrust},
		"network":   {RuleExecZeroTrust, RuleExecZeroTrust, RuleExecZeroTrust},
		"removable": {RuleExecZeroTrust, RuleExecZeroTrust, RuleExecZeroTrust},
		"private":   {RuleExecZeroTrust, RuleExecZeroTrust, RuleExecZeroTrust},
		"invalid":   {RuleObjectInvalid, RuleObjectInvalid, RuleObjectInvalid},
	},
	abi.OpCodeLoad: {
		"system":    {RuleAllowSystem, RuleAllowSystemSpace, RuleCodeUntrusted},
		"user":      {RuleAllowSystem, RuleCodeUserSpace, RuleCodeUntrusted},
		"network":   {RuleAllowSystem, RuleCodeUserSpace, RuleCodeUntrusted},
		"removable": {RuleAllowSystem, RuleCodeUserSpace, RuleCodeUntrusted},
		"private":   {RuleAllowSystem, RuleCodeUserSpace, RuleCodeUntrusted},
		"invalid":   {RuleAllowSystem, RuleObjectInvalid, RuleCodeUntrusted},
	},
	abi.OpFileRead: {
		"system":    {RuleAllowSystem, RuleAllowRead, RuleAllowRead},
		"user":      {RuleAllowSystem, RuleAllowRead, RuleAllowRead},
		"network":   {RuleAllowSystem, RuleAllowRead, RuleAllowRead},
		"removable": {RuleAllowSystem, RuleAllowRead, RuleAllowRead},
		"private":   {RuleAllowSystem, RuleFilePrivate, RuleFilePrivate},
		"invalid":   {RuleAllowSystem, RuleObjectInvalid, RuleObjectInvalid},
	},
	abi.OpFileWrite: {
		"system":    {RuleAllowSystem, RuleFileSystemWrite, RuleFileUntrustedWrite},
		"user":      {RuleAllowSystem, RuleAllowUserSpace, RuleFileUntrustedWrite},
		"network":   {RuleAllowSystem, RuleAllowUserSpace, RuleFileUntrustedWrite},
		"removable": {RuleAllowSystem, RuleAllowUserSpace, RuleFileUntrustedWrite},
		"private":   {RuleAllowSystem, RuleFilePrivate, RuleFileUntrustedWrite},
		"invalid":   {RuleAllowSystem, RuleObjectInvalid, RuleFileUntrustedWrite},
	},
}

func init() { want[abi.OpFileDelete] = want[abi.OpFileWrite] }

var threeZones = [3]string{ZoneSystem, ZoneGuarded, ZoneUntrusted}

// stateFor gives guarded and untrusted subjects an inherited origin, so
// every deny must name it.
func stateFor(zone string) string {
	switch zone {
	case ZoneGuarded:
		return "1i:OUTLOOK.EXE"
	case ZoneUntrusted:
		return "1i:payload.sh"
	}
	return "1u:"
}

func verdictOf(rule string) abi.Verdict {
	if strings.HasPrefix(rule, "allow.") {
		return abi.Allow
	}
	return abi.Deny
}

// checkRule checks verdict and rule, that guarded and untrusted denies
// name their origin, and the scope's truthfulness.
func checkRule(t *testing.T, p *Policy, req abi.DecideRequest, rule string) {
	t.Helper()
	got := p.Decide(&req)
	if got.Rule != rule || got.Verdict != verdictOf(rule) {
		t.Fatalf("%s: got %s %s (%s), want %s %s", describe(&req), got.Verdict, got.Rule, got.Reason, verdictOf(rule), rule)
	}
	if got.Verdict == abi.Deny && req.Zone != ZoneSystem {
		origin := strings.TrimPrefix(req.State, "1i:")
		if !strings.Contains(got.Reason, "because ancestor "+origin) {
			t.Errorf("%s: deny reason %q does not name ancestor %s", describe(&req), got.Reason, origin)
		}
	}
	checkAnswer(t, p, &req, got, rand.New(rand.NewPCG(1, uint64(len(req.Object)))), 20)
}

func TestDecidePaths(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	for op, bySpace := range want {
		for space, rules := range bySpace {
			for _, obj := range spaces[space] {
				for zi, zone := range threeZones {
					t.Run(op.String()+"/"+space+"/"+zone+"/"+obj.path, func(t *testing.T) {
						req := abi.DecideRequest{Op: op, Zone: zone, State: stateFor(zone), Object: obj.path, FS: obj.fs}
						checkRule(t, p, req, rules[zi])
					})
				}
			}
		}
	}
}

func TestDecideRegistry(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	keys := map[string][]string{
		"protected": {
			`HKLM\Software\Microsoft\Windows\CurrentVersion\Run\x`, `HKLM\SYSTEM\CurrentControlSet\Services\evil`, `HKLM`,
			`hklm\software`, `HKEY_LOCAL_MACHINE\Software\x`, `\REGISTRY\MACHINE\SOFTWARE\x`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\Run`, `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`,
			`hkcu\software\microsoft\windows\currentversion\run\updater`, `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\u`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\RunOnce\x`, `HKCU\Software\Microsoft\Windows\CurrentVersion\Policies\System`,
			`HKCU\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\Shell`, `HKCU\Environment`, `HKCU\Environment\windir`,
			`HKCU\Software\Classes\CLSID\{x}\InprocServer32`, `HKCU\Software\Classes`, `HKCU\\Software\\Classes\\x`,
			`HKU\S-1-5-21-1\Software\Microsoft\Windows\CurrentVersion\Run\x`, `HKEY_USERS\.DEFAULT\Environment`,
			`HKU\S-1-5-21-1_Classes\CLSID\{x}`, `\REGISTRY\USER\S-1-5-21-1\Environment\x`, `HKCR\CLSID\{x}`,
			`HKEY_CLASSES_ROOT\*\shellex`, `HKCC\Software\x`,
		},
		"unprotected": {
			`HKCU\Software\Foo`, `HKCU\Software\Microsoft\Windows\CurrentVersion\RunX`, `HKCU\Software\Microsoft\Windows\CurrentVersion\Runonce2\x`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\Explorer\x`, `HKCU\Software\Microsoft\Windows\CurrentVersion`,
			`HKCU`, `HKCU\EnvironmentX`, `HKCU\Software\ClassesX\x`, `HKU\S-1-5-21-1\Software\Foo`, `HKCU\Software/Classes/x`,
		},
		"invalid": {"", `HKXX\x`, `Software\x`, `HKU`, `HKU\`, `\REGISTRY\OTHER\x`, `HKLMX\x`, `C:\Windows`},
	}
	rules := map[string][3]string{
		"protected":   {RuleAllowSystem, RuleRegistryProtected, RuleRegistryUntrustedWrite},
		"unprotected": {RuleAllowSystem, RuleAllowRegistry, RuleRegistryUntrustedWrite},
		"invalid":     {RuleAllowSystem, RuleObjectInvalid, RuleRegistryUntrustedWrite},
	}
	for kind, ks := range keys {
		for _, k := range ks {
			for zi, zone := range threeZones {
				t.Run("write/"+kind+"/"+zone+"/"+k, func(t *testing.T) {
					checkRule(t, p, abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: zone, State: stateFor(zone), Object: k}, rules[kind][zi])
				})
				t.Run("read/"+kind+"/"+zone+"/"+k, func(t *testing.T) {
					checkRule(t, p, abi.DecideRequest{Op: abi.OpRegistryRead, Zone: zone, State: stateFor(zone), Object: k}, [3]string{RuleAllowSystem, RuleAllowRegRead, RuleAllowRegRead}[zi])
				})
			}
		}
	}
}

func TestDecideNetwork(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	type row struct {
		op    abi.Op
		proto abi.Proto
		ports []uint16
		rules [3]string
	}
	rows := []row{
		{abi.OpNetConnect, abi.ProtoTCP, []uint16{25, 53, 80, 110, 143, 443, 465, 587, 993, 995}, [3]string{RuleAllowSystem, RuleAllowPort, RuleNetUntrusted}},
		{abi.OpNetConnect, abi.ProtoTCP, []uint16{0, 1, 22, 123, 444, 994, 996, 4444, 8080, 65535}, [3]string{RuleAllowSystem, RuleNetPort, RuleNetUntrusted}},
		{abi.OpNetConnect, abi.ProtoUDP, []uint16{53, 123, 443}, [3]string{RuleAllowSystem, RuleAllowPort, RuleNetUntrusted}},
		{abi.OpNetConnect, abi.ProtoUDP, []uint16{25, 80, 4444}, [3]string{RuleAllowSystem, RuleNetPort, RuleNetUntrusted}},
		{abi.OpNetConnect, abi.ProtoNone, []uint16{443}, [3]string{RuleAllowSystem, RuleObjectInvalid, RuleNetUntrusted}},
		{abi.OpNetSend, abi.ProtoUDP, []uint16{53, 123, 443}, [3]string{RuleAllowSystem, RuleAllowPort, RuleNetUntrusted}},
		{abi.OpNetSend, abi.ProtoUDP, []uint16{0, 25, 80, 5353}, [3]string{RuleAllowSystem, RuleNetPort, RuleNetUntrusted}},
		{abi.OpNetBind, abi.ProtoTCP, []uint16{0, 80, 8080}, [3]string{RuleAllowSystem, RuleNetBind, RuleNetBind}},
		{abi.OpNetBind, abi.ProtoUDP, []uint16{53}, [3]string{RuleAllowSystem, RuleNetBind, RuleNetBind}},
	}
	for _, r := range rows {
		for _, port := range r.ports {
			for zi, zone := range threeZones {
				t.Run(r.op.String()+"/"+r.proto.String()+"/"+zone, func(t *testing.T) {
					req := abi.DecideRequest{Op: r.op, Zone: zone, State: stateFor(zone), Proto: r.proto, Port: port}
					req.Addr = [16]byte{10: 0xff, 11: 0xff, 12: 203, 13: 0, 14: 113, 15: 7}
					checkRule(t, p, req, r.rules[zi])
				})
			}
		}
	}
}

func TestDecideMemory(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	for _, op := range []abi.Op{abi.OpMemRead, abi.OpMemWrite} {
		for _, target := range []string{ZoneSystem, ZoneGuarded, ZoneUntrusted, "other", ""} {
			for zi, zone := range threeZones {
				t.Run(op.String()+"/"+zone+"/"+target, func(t *testing.T) {
					req := abi.DecideRequest{Op: op, Zone: zone, State: stateFor(zone), Object: `C:\Windows\System32\lsass.exe`, TargetZone: target}
					checkRule(t, p, req, [3]string{RuleAllowSystem, RuleMemOtherProcess, RuleMemOtherProcess}[zi])
				})
			}
		}
	}
}

func TestDecideOtherZones(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	for _, zone := range []string{"", "quarantine", "System", "guarded "} {
		for _, op := range abi.Ops() {
			req := abi.DecideRequest{Op: op, Zone: zone, Object: "/tmp/x", Proto: abi.ProtoTCP, Port: 4444}
			got := p.Decide(&req)
			want := abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectAny, TTLMillis: DefaultAllowTTLMillis}
			if got.Verdict != abi.Abstain || got.Scope != want || got.Rule != RuleAbstainZone {
				t.Errorf("%s: got %+v, want an abstention with scope %+v", describe(&req), got, want)
			}
		}
	}
	req := abi.DecideRequest{Op: abi.Op(99), Zone: ZoneGuarded}
	if got := p.Decide(&req); got.Verdict != abi.Abstain || got.Scope.TTLMillis != 0 || got.Rule != RuleAbstainOp {
		t.Errorf("unknown op: got %+v, want an uncached abstention", got)
	}
}

// TestScopes pins the scopes of typical answers, so that a change that
// narrows them (costing cache hits) or widens them shows up.
func TestScopes(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	const ttlA, ttlD = DefaultAllowTTLMillis, DefaultDenyTTLMillis
	prefix := func(subj abi.ScopeSubject, s string, ttl uint32) abi.Scope {
		return abi.Scope{Subject: subj, Object: abi.ObjectPrefix, PrefixLen: uint32(len(s)), TTLMillis: ttl}
	}
	g, u, s := ZoneGuarded, ZoneUntrusted, ZoneSystem
	zs, zn := abi.SubjectZoneState, abi.SubjectZone
	tests := []struct {
		zone  string
		op    abi.Op
		obj   string
		fs    abi.FSKind
		proto abi.Proto
		port  uint16
		want  abi.Scope
	}{
		{g, abi.OpProcessExec, "/usr/bin/bash", 0, 0, 0, prefix(zn, "/usr/", ttlA)},
		{s, abi.OpProcessExec, "/usr/bin/bash", 0, 0, 0, prefix(zn, "/usr/", ttlA)},
		{u, abi.OpProcessExec, "/usr/bin/bash", 0, 0, 0, prefix(zs, "/usr/", ttlD)},
		{g, abi.OpProcessExec, `C:\Windows\System32\cmd.exe`, 0, 0, 0, prefix(zn, `C:\Windows\`, ttlA)},
		{g, abi.OpProcessExec, `C:\Program Files (x86)\a.exe`, 0, 0, 0, prefix(zn, `C:\Program Files (x86)\`, ttlA)},
		{g, abi.OpProcessExec, "/tmp/payload", 0, 0, 0, prefix(zs, "/tmp/", ttlD)},
		{s, abi.OpProcessExec, "/tmp/payload", 0, 0, 0, prefix(zn, "/tmp/", ttlD)},
		{s, abi.OpProcessExec, "/usr/bin/x", abi.FSNetwork, 0, 0, prefix(zn, "/", ttlD)},
		{g, abi.OpProcessExec, "/usr", 0, 0, 0, abi.Scope{Subject: zn, TTLMillis: ttlA}},
		{g, abi.OpProcessExec, "", 0, 0, 0, abi.Scope{Subject: zs, TTLMillis: ttlD}},
		{g, abi.OpFileRead, "/home/bob/.ssh/id_rsa", 0, 0, 0, prefix(zs, "/home/bob/.ssh/", ttlD)},
		{g, abi.OpFileRead, "/home/bob/projects/a.go", 0, 0, 0, prefix(zn, "/home/bob/projects/", ttlA)},
		{g, abi.OpFileRead, "/usr/share/doc/x", 0, 0, 0, prefix(zn, "/usr/", ttlA)},
		{g, abi.OpFileWrite, "/usr/lib/x.so", 0, 0, 0, prefix(zs, "/usr/", ttlD)},
		{g, abi.OpFileWrite, "/tmp/x", 0, 0, 0, prefix(zn, "/tmp/", ttlA)},
		{g, abi.OpFileWrite, `C:\Windows\System32\evil.dll`, 0, 0, 0, prefix(zs, `C:\Windows\`, ttlD)},
		{g, abi.OpFileWrite, `C:\Users\bob\Documents\Private\a`, 0, 0, 0, prefix(zs, `C:\Users\bob\Documents\Private\`, ttlD)},
		{g, abi.OpFileWrite, `C:\Users\bob\Documents\a.docx`, 0, 0, 0, prefix(zn, `C:\Users\bob\Documents\a.docx`, ttlA)},
		{u, abi.OpFileWrite, "/tmp/x", 0, 0, 0, abi.Scope{Subject: zs, Object: abi.ObjectAny, TTLMillis: ttlD}},
		{s, abi.OpFileWrite, "/usr/x", 0, 0, 0, abi.Scope{Subject: zn, Object: abi.ObjectAny, TTLMillis: ttlA}},
		{g, abi.OpRegistryWrite, `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`, 0, 0, 0,
			prefix(zs, `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\`, ttlD)},
		{g, abi.OpRegistryWrite, `HKLM\Software\x`, 0, 0, 0, prefix(zs, `HKLM\`, ttlD)},
		{g, abi.OpRegistryWrite, `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`, 0, 0, 0, abi.Scope{Subject: zs, TTLMillis: ttlD}},
		{g, abi.OpRegistryWrite, `HKCU\Software\Foo\Bar`, 0, 0, 0, prefix(zn, `HKCU\Software\Foo\`, ttlA)},
		{g, abi.OpRegistryRead, `HKLM\x`, 0, 0, 0, abi.Scope{Subject: zn, Object: abi.ObjectAny, TTLMillis: ttlA}},
		{g, abi.OpNetConnect, "", 0, abi.ProtoTCP, 4444, abi.Scope{Subject: zs, Object: abi.ObjectPortRange, PortLo: 996, PortHi: 65535, TTLMillis: ttlD}},
		{g, abi.OpNetConnect, "", 0, abi.ProtoTCP, 443, abi.Scope{Subject: zn, Object: abi.ObjectPortRange, PortLo: 443, PortHi: 443, TTLMillis: ttlA}},
		{g, abi.OpNetConnect, "", 0, abi.ProtoTCP, 22, abi.Scope{Subject: zs, Object: abi.ObjectPortRange, PortLo: 0, PortHi: 24, TTLMillis: ttlD}},
		{g, abi.OpNetSend, "", 0, abi.ProtoUDP, 124, abi.Scope{Subject: zs, Object: abi.ObjectPortRange, PortLo: 124, PortHi: 442, TTLMillis: ttlD}},
		{g, abi.OpNetBind, "", 0, abi.ProtoTCP, 80, abi.Scope{Subject: zs, Object: abi.ObjectAny, TTLMillis: ttlD}},
		{g, abi.OpMemWrite, `C:\Windows\System32\lsass.exe`, 0, 0, 0, abi.Scope{Subject: zs, Object: abi.ObjectAny, TTLMillis: ttlD}},
		{s, abi.OpMemWrite, `C:\Windows\System32\lsass.exe`, 0, 0, 0, abi.Scope{Subject: zn, Object: abi.ObjectAny, TTLMillis: ttlA}},
	}
	for _, tt := range tests {
		t.Run(tt.zone+"/"+tt.op.String()+"/"+tt.obj, func(t *testing.T) {
			req := abi.DecideRequest{Op: tt.op, Zone: tt.zone, State: stateFor(tt.zone), Object: tt.obj, FS: tt.fs, Proto: tt.proto, Port: tt.port}
			if got := p.Decide(&req); got.Scope != tt.want {
				t.Errorf("got scope %+v (%s %s), want %+v", got.Scope, got.Verdict, got.Rule, tt.want)
			}
		})
	}
}

func TestDenyReasons(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	tests := []struct {
		zone, state string
		op          abi.Op
		obj         string
		want        string
	}{
		{ZoneGuarded, "1i:OUTLOOK.EXE", abi.OpRegistryWrite, `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`,
			`guarded processes may not write protected registry keys (HKCU\Software\Microsoft\Windows\CurrentVersion\Run); guarded because ancestor OUTLOOK.EXE is a guarded app`},
		{ZoneGuarded, "1:firefox.exe", abi.OpFileRead, "/home/bob/.ssh/id_rsa",
			"guarded processes may not read or write private folders (/home/*/.ssh/); guarded because firefox.exe is a guarded app"},
		{ZoneUntrusted, "1:payload", abi.OpFileRead, "/root/.ssh/id_rsa",
			"untrusted processes may not read or write private folders (/root/.ssh/); untrusted because payload runs from outside system space"},
		{ZoneUntrusted, "1iu:payload", abi.OpMemRead, "",
			"untrusted processes may not read or write another process's memory; untrusted because ancestor payload runs from outside system space (its own ancestry is unknown: it predates the host)"},
		{ZoneGuarded, "not ours", abi.OpNetBind, "", "guarded processes may not listen on ports; guarded (origin not recorded)"},
		{ZoneGuarded, "", abi.OpNetBind, "", "guarded processes may not listen on ports; guarded (origin not recorded)"},
		{ZoneSystem, "1u:", abi.OpProcessExec, "/tmp/x", reasonZeroTrust},
		{ZoneGuarded, "1i:OUTLOOK.EXE", abi.OpProcessExec, "/tmp/x", reasonZeroTrust + "; guarded because ancestor OUTLOOK.EXE is a guarded app"},
	}
	for _, tt := range tests {
		req := abi.DecideRequest{Op: tt.op, Zone: tt.zone, State: tt.state, Object: tt.obj}
		if got := p.Decide(&req); got.Reason != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", describe(&req), got.Reason, tt.want)
		}
	}
	// The port lists are in the reasons.
	req := abi.DecideRequest{Op: abi.OpNetConnect, Zone: ZoneGuarded, State: "1:firefox.exe", Proto: abi.ProtoTCP, Port: 4444}
	if got := p.Decide(&req).Reason; !strings.HasPrefix(got, "guarded processes may connect over TCP only to ports 25, 53, 80, 110, 143, 443, 465, 587, 993, 995; ") {
		t.Errorf("net.port reason %q", got)
	}
}

// TestLongReasons checks that config entries and origins of any length
// still give valid reasons.
func TestLongReasons(t *testing.T) {
	c := DefaultConfig()
	long := "/" + strings.Repeat("é", 1500) + "/"
	c.PrivateFolders = []string{long}
	c.GuardedTCPPorts = nil
	for port := 1; port < 65536; port += 2 {
		c.GuardedTCPPorts = append(c.GuardedTCPPorts, uint16(port))
	}
	p := mustNew(t, c)
	st := state{inherited: true, origin: sanitize(strings.Repeat("ü", 400), maxOrigin)}.encode()
	for _, req := range []abi.DecideRequest{
		{Op: abi.OpFileRead, Zone: ZoneGuarded, State: st, Object: long + "x"},
		{Op: abi.OpNetConnect, Zone: ZoneGuarded, State: st, Proto: abi.ProtoTCP, Port: 4444},
	} {
		got := p.Decide(&req)
		if err := got.Validate(); err != nil || got.Verdict != abi.Deny {
			t.Errorf("%s: %v %v", describe(&req), got.Verdict, err)
		}
	}
}

// TestDecideCustomConfig covers what the defaults cannot show: a private
// folder inside system space, a top-level wildcard, a UNC pattern, a
// system prefix given without its trailing separator, nested registry
// entries and runs of ports; and how they narrow scopes.
func TestDecideCustomConfig(t *testing.T) {
	p := mustNew(t, customConfig())
	g, s := ZoneGuarded, ZoneSystem
	tests := []struct {
		zone string
		op   abi.Op
		obj  string
		port uint16
		rule string
		pfx  string // the claimed prefix; "" for none
	}{
		{g, abi.OpProcessExec, "/etc/ssl/private/x", 0, RuleFilePrivate, "/etc/ssl/private/"},
		{g, abi.OpCodeLoad, "/etc/ssl/private/x.so", 0, RuleFilePrivate, "/etc/ssl/private/"},
		{g, abi.OpFileWrite, "/etc/ssl/private/key.pem", 0, RuleFilePrivate, "/etc/ssl/private/"},
		{g, abi.OpFileWrite, "/etc/ssl/certs/x.pem", 0, RuleFileSystemWrite, "/etc/ssl/certs/"},
		{g, abi.OpFileWrite, "/etc/passwd", 0, RuleFileSystemWrite, "/etc/passwd"},
		{s, abi.OpProcessExec, "/etc/ssl/private/x", 0, RuleAllowSystemSpace, "/etc/"},
		{g, abi.OpProcessExec, "/usr/bin/bash", 0, RuleAllowSystemSpace, "/usr/bin/"}, // "/*/secret/" narrows it
		{g, abi.OpFileRead, "/usr/secret/x", 0, RuleFilePrivate, "/usr/secret/"},
		{g, abi.OpFileRead, "/tmp/secret", 0, RuleFilePrivate, ""},
		{g, abi.OpProcessExec, "/usr/local/bin/x", 0, RuleAllowSystemSpace, "/usr/local/"},
		{g, abi.OpProcessExec, "/srv/apps/x", 0, RuleAllowSystemSpace, "/srv/apps/"},
		{g, abi.OpProcessExec, "/srv/appsx/x", 0, RuleExecZeroTrust, "/srv/appsx/"},
		{g, abi.OpProcessExec, `d:/tools/x.exe`, 0, RuleAllowSystemSpace, `d:/tools/`},
		{g, abi.OpFileRead, `\\FILES\hr\bob\salary.xlsx`, 0, RuleFilePrivate, `\\FILES\hr\bob\`},
		{g, abi.OpFileRead, `\\files\it\x`, 0, RuleAllowRead, `\\files\it\`},
		{g, abi.OpFileRead, "/opt/vendor/acme/keys/k", 0, RuleFilePrivate, "/opt/vendor/acme/keys/"},
		{g, abi.OpRegistryWrite, `HKLM\Software\Vendor\Locked\x`, 0, RuleRegistryProtected, `HKLM\Software\Vendor\Locked\`},
		{g, abi.OpRegistryWrite, `HKLM\Software\Vendor\Other`, 0, RuleRegistryProtected, `HKLM\Software\Vendor\Other`},
		{g, abi.OpRegistryWrite, `HKCR\CLSID\Special\x`, 0, RuleRegistryProtected, `HKCR\`},
		{g, abi.OpRegistryWrite, `HKCU\Software\Classes\CLSID\Special\x`, 0, RuleRegistryProtected, `HKCU\Software\Classes\`},
		{g, abi.OpNetConnect, "", 8001, RuleAllowPort, ""},
		{g, abi.OpNetConnect, "", 65535, RuleAllowPort, ""},
		{g, abi.OpNetConnect, "", 1, RuleAllowPort, ""},
	}
	for _, tt := range tests {
		t.Run(tt.zone+"/"+tt.op.String()+"/"+tt.obj, func(t *testing.T) {
			req := abi.DecideRequest{Op: tt.op, Zone: tt.zone, State: stateFor(tt.zone), Object: tt.obj, Proto: abi.ProtoTCP, Port: tt.port}
			checkRule(t, p, req, tt.rule)
			got := p.Decide(&req)
			if tt.pfx != "" && (got.Scope.Object != abi.ObjectPrefix || req.Object[:got.Scope.PrefixLen] != tt.pfx) {
				t.Errorf("scope %+v, want prefix %q", got.Scope, tt.pfx)
			}
		})
	}
	// Which entry a reason names: the first that matches, in config order.
	req := abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: g, State: "1:x", Object: `HKLM\Software\Vendor\Locked\x`}
	if got := p.Decide(&req).Reason; !strings.Contains(got, `(HKLM\Software\Vendor\Locked)`) {
		t.Errorf("reason %q", got)
	}
	req = abi.DecideRequest{Op: abi.OpNetConnect, Zone: g, State: "1:x", Proto: abi.ProtoTCP, Port: 8002}
	if got := p.Decide(&req).Scope; got.PortLo != 8000 || got.PortHi != 8003 {
		t.Errorf("port run: scope %+v, want 8000..8003", got)
	}
}

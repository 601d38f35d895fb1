package policy

import (
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

// miniHost plays the host's part for the scenario: a process table that
// keeps each process's zone and state, and the exec-then-classify order.
type miniHost struct {
	t     *testing.T
	p     *Policy
	procs map[int]abi.ClassifyResponse
	exes  map[int]string
}

func newMiniHost(t *testing.T) *miniHost {
	return &miniHost{t: t, p: mustNew(t, DefaultConfig()), procs: map[int]abi.ClassifyResponse{}, exes: map[int]string{}}
}

// exist records a process that predates the host.
func (h *miniHost) exist(pid int, exe string) {
	h.procs[pid] = h.p.Classify(&abi.ClassifyRequest{Flags: abi.FlagCreatorUnknown, Exe: exe})
	h.exes[pid] = exe
}

// exec asks whether ppid may start exe and, if so, classifies the child.
func (h *miniHost) exec(pid, ppid int, exe string) abi.DecideResponse {
	h.t.Helper()
	parent := h.procs[ppid]
	req := abi.DecideRequest{Op: abi.OpProcessExec, Zone: parent.Zone, State: parent.State, Object: exe}
	d := h.p.Decide(&req)
	checkAnswer(h.t, h.p, &req, d, newRand(), 20)
	if d.Verdict == abi.Allow {
		h.procs[pid] = h.p.Classify(&abi.ClassifyRequest{Exe: exe, CreatorZone: parent.Zone, CreatorState: parent.State, CreatorExe: h.exes[ppid]})
		h.exes[pid] = exe
	}
	return d
}

func (h *miniHost) access(pid int, req abi.DecideRequest) abi.DecideResponse {
	h.t.Helper()
	req.Zone, req.State = h.procs[pid].Zone, h.procs[pid].State
	d := h.p.Decide(&req)
	checkAnswer(h.t, h.p, &req, d, newRand(), 20)
	return d
}

// TestOriginScenario is REFERENCE-POLICY.md's scenario, as written there and
// as shared/scenarios/origin.jsonl replays it.
func TestOriginScenario(t *testing.T) {
	const (
		explorer = `C:\Windows\explorer.exe`
		outlook  = `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`
		firefox  = `C:\Program Files\Mozilla Firefox\firefox.exe`
		acrobat  = `C:\Program Files (x86)\Adobe\Acrobat Reader DC\Reader\AcroRd32.exe`
		pwsh     = `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`
		lsass    = `C:\Windows\System32\lsass.exe`
		payload  = `C:\Users\bob\AppData\Local\Temp\payload.exe`
	)
	h := newMiniHost(t)
	h.exist(4, `C:\Windows\System32\ntoskrnl.exe`)
	h.exist(600, lsass)
	h.exist(100, explorer)
	for pid, zone := range map[int]string{4: ZoneSystem, 600: ZoneSystem, 100: ZoneSystem} {
		if h.procs[pid].Zone != zone || h.procs[pid].State != "1u:" {
			t.Fatalf("pid %d: got %+v, want %s with unknown ancestry", pid, h.procs[pid], zone)
		}
	}

	chain := []struct {
		pid, ppid int
		exe       string
	}{{200, 100, outlook}, {300, 200, firefox}, {400, 300, acrobat}, {500, 400, pwsh}}
	for _, c := range chain {
		if d := h.exec(c.pid, c.ppid, c.exe); d.Verdict != abi.Allow {
			t.Fatalf("exec %s: %s %s", c.exe, d.Verdict, d.Reason)
		}
		if got := h.procs[c.pid]; got.Zone != ZoneGuarded || !strings.HasSuffix(got.State, ":OUTLOOK.EXE") {
			t.Fatalf("%s: got %+v, want guarded with origin OUTLOOK.EXE", c.exe, got)
		}
	}
	if got := h.procs[300]; !got.Inherited() {
		t.Errorf("firefox.exe started by OUTLOOK.EXE: want inherited (its own name does not matter), got %+v", got)
	}
	// What the guarded chain may still do.
	tls := abi.DecideRequest{Op: abi.OpNetConnect, Proto: abi.ProtoTCP, Port: 443}
	download := abi.DecideRequest{Op: abi.OpFileWrite, Object: `C:\Users\bob\Downloads\invoice.pdf`}
	read := abi.DecideRequest{Op: abi.OpFileRead, Object: `C:\Users\bob\Downloads\invoice.pdf`}
	regRead := abi.DecideRequest{Op: abi.OpRegistryRead, Object: `HKLM\Software\Microsoft\Windows\CurrentVersion`}
	for _, a := range []struct {
		pid int
		req abi.DecideRequest
	}{{300, tls}, {300, download}, {400, read}, {500, regRead}} {
		if d := h.access(a.pid, a.req); d.Verdict != abi.Allow {
			t.Errorf("pid %d %s %s: got %s %s", a.pid, a.req.Op, a.req.Object, d.Verdict, d.Reason)
		}
	}

	// The same PowerShell, started directly by explorer.exe.
	if d := h.exec(700, 100, pwsh); d.Verdict != abi.Allow {
		t.Fatalf("explorer -> powershell: %s", d.Reason)
	}
	if got := h.procs[700]; got.Zone != ZoneSystem || got.State != "" {
		t.Fatalf("powershell from explorer: got %+v, want system", got)
	}

	attacks := []struct {
		name string
		req  abi.DecideRequest
		rule string
	}{
		{"registry run key", abi.DecideRequest{Op: abi.OpRegistryWrite, Object: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`}, RuleRegistryProtected},
		{"mem.write lsass", abi.DecideRequest{Op: abi.OpMemWrite, Object: lsass, TargetZone: ZoneSystem}, RuleMemOtherProcess},
		{"mem.read lsass", abi.DecideRequest{Op: abi.OpMemRead, Object: lsass, TargetZone: ZoneSystem}, RuleMemOtherProcess},
		{"system32 write", abi.DecideRequest{Op: abi.OpFileWrite, Object: `C:\Windows\System32\evil.dll`}, RuleFileSystemWrite},
		{"c2 connect", abi.DecideRequest{Op: abi.OpNetConnect, Proto: abi.ProtoTCP, Port: 4444,
			Addr: [16]byte{10: 0xff, 11: 0xff, 12: 203, 13: 0, 14: 113, 15: 7}}, RuleNetPort},
		{"payload exec", abi.DecideRequest{Op: abi.OpProcessExec, Object: payload}, RuleExecZeroTrust},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			var d abi.DecideResponse
			if a.req.Op == abi.OpProcessExec {
				d = h.exec(510, 500, a.req.Object)
			} else {
				d = h.access(500, a.req)
			}
			if d.Verdict != abi.Deny || d.Rule != a.rule {
				t.Errorf("guarded powershell: got %s %s, want deny %s", d.Verdict, d.Rule, a.rule)
			}
			if !strings.Contains(d.Reason, "guarded because ancestor OUTLOOK.EXE is a guarded app") {
				t.Errorf("reason %q does not name OUTLOOK.EXE", d.Reason)
			}

			// The system PowerShell may do all of it but start the payload.
			if a.req.Op == abi.OpProcessExec {
				d = h.exec(710, 700, a.req.Object)
				if d.Verdict != abi.Deny || d.Rule != RuleExecZeroTrust {
					t.Errorf("system powershell: got %s %s, want deny %s", d.Verdict, d.Rule, RuleExecZeroTrust)
				}
			} else if d = h.access(700, a.req); d.Verdict != abi.Allow {
				t.Errorf("system powershell: got %s %s, want allow", d.Verdict, d.Rule)
			}
		})
	}
}

// TestLinuxScenario is the same story on Linux: thunderbird -> evince ->
// bash, against bash started from a terminal.
func TestLinuxScenario(t *testing.T) {
	h := newMiniHost(t)
	h.exist(1, "/usr/lib/systemd/systemd")
	h.exec(10, 1, "/usr/bin/gnome-terminal")
	h.exec(20, 1, "/usr/bin/thunderbird")
	h.exec(30, 20, "/usr/bin/evince")
	h.exec(40, 30, "/usr/bin/bash")
	h.exec(50, 10, "/usr/bin/bash")
	if h.procs[40].Zone != ZoneGuarded || h.procs[50].Zone != ZoneSystem {
		t.Fatalf("got %+v and %+v", h.procs[40], h.procs[50])
	}
	for _, req := range []abi.DecideRequest{
		{Op: abi.OpFileRead, Object: "/home/bob/.ssh/id_ed25519"},
		{Op: abi.OpFileWrite, Object: "/etc/cron.d/evil"},
		{Op: abi.OpCodeLoad, Object: "/tmp/evil.so"},
		{Op: abi.OpNetBind, Proto: abi.ProtoTCP, Port: 31337},
		{Op: abi.OpNetSend, Proto: abi.ProtoUDP, Port: 9999},
		{Op: abi.OpMemRead, Object: "/usr/bin/gnome-keyring-daemon", TargetZone: ZoneSystem},
	} {
		if d := h.access(40, req); d.Verdict != abi.Deny || !strings.Contains(d.Reason, "ancestor thunderbird") {
			t.Errorf("guarded bash %s %s: got %s %q", req.Op, req.Object, d.Verdict, d.Reason)
		}
		if d := h.access(50, req); d.Verdict != abi.Allow {
			t.Errorf("system bash %s %s: got %s %q", req.Op, req.Object, d.Verdict, d.Reason)
		}
	}
	if d := h.exec(60, 40, "/tmp/payload"); d.Verdict != abi.Deny {
		t.Errorf("guarded bash starts /tmp/payload: %s", d.Verdict)
	}
}

package policy

import (
	"fmt"
	"testing"

	"lineage.dev/lineage/abi"
)

// 60-byte paths, as typical of files a browser or an editor touches: one
// under /home, where private-folder patterns start, and one elsewhere.
const (
	benchPath     = "/home/alice/projects/lineage/internal/cache/cache_entries.go"
	benchUserPath = "/u000000000001/Documents/reports/2026/q3/summary-final-1.txt"
)

func init() {
	if len(benchPath) != 60 || len(benchUserPath) != 60 {
		panic("bench paths must be 60 bytes")
	}
}

func BenchmarkDecide(b *testing.B) {
	p := mustNew(b, DefaultConfig())
	const st = "1i:thunderbird"
	cases := []struct {
		name string
		req  abi.DecideRequest
	}{
		{"guarded/file.read/allow", abi.DecideRequest{Op: abi.OpFileRead, Zone: ZoneGuarded, State: st, Object: benchPath}},
		{"guarded/file.write/allow", abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: st, Object: benchPath}},
		{"guarded/file.read/allow-user", abi.DecideRequest{Op: abi.OpFileRead, Zone: ZoneGuarded, State: st, Object: benchUserPath}},
		{"guarded/file.write/allow-user", abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: st, Object: benchUserPath}},
		{"guarded/process.exec/allow-short", abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneGuarded, State: st, Object: "/usr/bin/python3"}},
		{"guarded/process.exec/allow", abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneGuarded, State: st, Object: "/usr/lib/x86_64-linux-gnu/libreoffice/program/soffice.bin"}},
		{"guarded/code.load/allow-windows", abi.DecideRequest{Op: abi.OpCodeLoad, Zone: ZoneGuarded, State: st, Object: `C:\Program Files\Mozilla Firefox\gkcodecs.dll`}},
		{"guarded/registry.write/allow", abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: ZoneGuarded, State: st, Object: `HKCU\Software\Mozilla\Firefox\Launcher`}},
		{"guarded/net.connect/allow", abi.DecideRequest{Op: abi.OpNetConnect, Zone: ZoneGuarded, State: st, Proto: abi.ProtoTCP, Port: 443}},
		{"system/file.write/allow", abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneSystem, Object: benchPath}},
		{"system/process.exec/allow", abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneSystem, Object: "/usr/bin/bash"}},
		{"guarded/file.write/deny", abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: st, Object: "/usr/lib/x86_64-linux-gnu/libc.so.6"}},
		{"guarded/registry.write/deny", abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: ZoneGuarded, State: st, Object: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`}},
		{"system/process.exec/deny", abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneSystem, Object: "/tmp/payload"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(&c.req)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	p := mustNew(b, DefaultConfig())
	cases := []struct {
		name string
		req  abi.ClassifyRequest
	}{
		{"system", abi.ClassifyRequest{Exe: "/usr/bin/bash", CreatorZone: ZoneSystem, CreatorExe: "/usr/bin/gnome-terminal-server"}},
		{"user", abi.ClassifyRequest{Exe: benchUserPath, CreatorZone: ZoneSystem, CreatorExe: "/usr/bin/bash"}},
		{"guarded-app", abi.ClassifyRequest{Exe: `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`, CreatorZone: ZoneSystem, CreatorExe: `C:\Windows\explorer.exe`}},
		{"inherited", abi.ClassifyRequest{Exe: `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, CreatorZone: ZoneGuarded, CreatorState: "1i:OUTLOOK.EXE", CreatorExe: `C:\x\AcroRd32.exe`}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Classify(&c.req)
			}
		})
	}
}

// TestDecideAllocations pins what the benchmarks show: answers allocate
// nothing, a deny that names its origin included once its reason is
// memoized (the first such deny for a state allocates it).
func TestDecideAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	p := mustNew(t, DefaultConfig())
	for _, tt := range []struct {
		req  abi.DecideRequest
		want float64
	}{
		{abi.DecideRequest{Op: abi.OpFileRead, Zone: ZoneGuarded, State: "1i:x", Object: benchPath}, 0},
		{abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: "1i:x", Object: `C:\Users\bob\Downloads\invoice.pdf`}, 0},
		{abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneGuarded, State: "1i:x", Object: "/usr/bin/bash"}, 0},
		{abi.DecideRequest{Op: abi.OpRegistryWrite, Zone: ZoneGuarded, State: "1i:x", Object: `HKCU\Software\Foo`}, 0},
		{abi.DecideRequest{Op: abi.OpNetConnect, Zone: ZoneGuarded, State: "1i:x", Proto: abi.ProtoTCP, Port: 443}, 0},
		{abi.DecideRequest{Op: abi.OpMemRead, Zone: ZoneSystem}, 0},
		{abi.DecideRequest{Op: abi.OpProcessExec, Zone: ZoneSystem, Object: "/tmp/x"}, 0},
		{abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: "1i:x", Object: "/usr/bin/x"}, 0},
	} {
		if got := testing.AllocsPerRun(100, func() { p.Decide(&tt.req) }); got != tt.want {
			t.Errorf("%s: %v allocations, want %v", describe(&tt.req), got, tt.want)
		}
	}
	// Past the memo's bound, a deny for a new state allocates its reason
	// and the memo stays bounded.
	for i := 0; i < 2*maxNotes; i++ {
		p.Decide(&abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: fmt.Sprintf("1i:app%d", i), Object: "/usr/bin/x"})
	}
	if len(p.notes) != maxNotes {
		t.Errorf("%d memoized reasons, want the bound %d", len(p.notes), maxNotes)
	}
	fresh := abi.DecideRequest{Op: abi.OpFileWrite, Zone: ZoneGuarded, State: "1i:unseen", Object: "/usr/bin/x"}
	if got := testing.AllocsPerRun(100, func() { p.Decide(&fresh) }); got != 1 {
		t.Errorf("a deny past the memo's bound: %v allocations, want 1", got)
	}
}

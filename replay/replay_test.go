package replay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lineage.dev/lineage/host"
	"lineage.dev/lineage/plugins/builtin"
)

var ctx = context.Background()

// zones is the built-in reference plugin, compiled once for the package.
var zonesRuntime struct {
	rt *host.Runtime
	p  *host.Plugin
}

func TestMain(m *testing.M) {
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p, err := rt.Load(ctx, builtin.ZonesSource, builtin.Zones, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	zonesRuntime.rt, zonesRuntime.p = rt, p
	code := m.Run()
	rt.Close(ctx)
	os.Exit(code)
}

func newRunner(t *testing.T, cfg host.Config) *Runner {
	t.Helper()
	e, err := host.New(cfg, zonesRuntime.p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return &Runner{Engine: e}
}

// scenarioDirs are the in-repository copies and, when this checkout sits
// next to the team's shared folder, the originals.
func scenarioDirs(t *testing.T) []string {
	dirs := []string{"../testdata/scenarios"}
	if _, err := os.Stat("../../shared/scenarios"); err == nil {
		dirs = append(dirs, "../../shared/scenarios")
	}
	return dirs
}

// TestScenarios replays every scenario with the built-in plugin and
// compares each decision with the .expected file next to it.
func TestScenarios(t *testing.T) {
	n := 0
	for _, dir := range scenarioDirs(t) {
		traces, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		for _, trace := range traces {
			n++
			t.Run(trace, func(t *testing.T) {
				want := readExpected(t, strings.TrimSuffix(trace, ".jsonl")+".expected")
				f, err := os.Open(trace)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var got []string
				r := newRunner(t, host.Config{})
				err = r.Run(ctx, f, func(res *Result) error {
					o := res.Output()
					child := o.ChildZone
					if child == "" {
						child = "-"
					}
					got = append(got, fmt.Sprintf("%d %s %s %s", o.Line, o.Verdict, o.Zone, child))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("decisions differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no scenarios found")
	}
}

func readExpected(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// TestOriginDetails checks what the expected file does not: rules,
// reasons naming the ancestor, lineage and caching.
func TestOriginDetails(t *testing.T) {
	f, err := os.Open("../testdata/scenarios/origin.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byLine := map[int]Output{}
	r := newRunner(t, host.Config{})
	if err := r.Run(ctx, f, func(res *Result) error { byLine[res.Event.Line] = res.Output(); return nil }); err != nil {
		t.Fatal(err)
	}
	ps := byLine[11] // PowerShell (guarded via OUTLOOK.EXE) writes the Run key
	if ps.Rule == "" || !strings.Contains(ps.Reason, "OUTLOOK.EXE") || ps.Plugin != "zones" {
		t.Errorf("line 11: rule %q reason %q plugin %q: want a rule and a reason naming OUTLOOK.EXE", ps.Rule, ps.Reason, ps.Plugin)
	}
	var chain []string
	for _, l := range ps.Lineage {
		chain = append(chain, fmt.Sprintf("%d", l.PID))
	}
	if got := strings.Join(chain, "<"); got != "500<400<300<200" {
		t.Errorf("line 11 lineage %s, want 500<400<300<200 (powershell up to OUTLOOK.EXE)", got)
	}
	if direct := byLine[19]; len(direct.Lineage) != 1 || direct.Lineage[0].PID != 700 {
		t.Errorf("line 19: the system PowerShell's zone is its own, got lineage %+v", direct.Lineage)
	}
	for _, line := range []int{11, 12, 13, 14, 15, 16, 24} {
		if o := byLine[line]; o.Verdict != "deny" || o.Reason == "" || o.Enforced != nil {
			t.Errorf("line %d: %+v: want an enforced deny with a reason", line, o)
		}
	}
}

func TestAuditMode(t *testing.T) {
	f, err := os.Open("../testdata/scenarios/origin.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newRunner(t, host.Config{Mode: host.Audit})
	var outs []Output
	if err := r.Run(ctx, f, func(res *Result) error { outs = append(outs, res.Output()); return nil }); err != nil {
		t.Fatal(err)
	}
	denies := 0
	for _, o := range outs {
		if o.Verdict == "deny" {
			denies++
			if o.Enforced == nil || *o.Enforced {
				t.Errorf("line %d: audit-mode deny without \"enforced\":false", o.Line)
			}
		}
	}
	if denies != 7 {
		t.Fatalf("%d would-be denials, want 7", denies)
	}
	// The payload exec proceeds in audit mode, so it got classified.
	for _, o := range outs {
		if o.Line == 16 && o.ChildZone != "guarded" {
			t.Errorf("line 16 in audit mode: child zone %q, want guarded (inherited)", o.ChildZone)
		}
	}
}

func TestTraceErrors(t *testing.T) {
	base := `{"event":"exist","pid":1,"exe":"/usr/bin/bash"}
{"event":"access","pid":1,"op":"file.read","path":"/etc/hosts"}
`
	tests := []struct {
		name, line, want string
	}{
		{"not JSON", `{"event":`, "line 3: not a JSON object"},
		{"array", `[1,2]`, "line 3: not a JSON object"},
		{"no event", `{"pid":1}`, "line 3: field event: missing"},
		{"unknown event", `{"event":"fork","pid":1}`, `line 3: field event: unknown event "fork"`},
		{"unknown op", `{"event":"access","pid":1,"op":"file.chmod","path":"/x"}`, `line 3: field op: unknown op "file.chmod"`},
		{"missing path", `{"event":"access","pid":1,"op":"file.write"}`, "line 3: field path: missing"},
		{"missing key", `{"event":"access","pid":1,"op":"registry.write"}`, "line 3: field key: missing"},
		{"bad proto", `{"event":"access","pid":1,"op":"net.connect","proto":"sctp","addr":"1.2.3.4","port":1}`, `line 3: field proto: unknown protocol "sctp"`},
		{"bad addr", `{"event":"access","pid":1,"op":"net.connect","proto":"tcp","addr":"1.2.3","port":1}`, "line 3: field addr"},
		{"port too big", `{"event":"access","pid":1,"op":"net.bind","proto":"tcp","addr":"::","port":70000}`, "line 3: field port: 70000 is out of range"},
		{"pid a string", `{"event":"exit","pid":"1"}`, "line 3: field pid: want an integer"},
		{"negative pid", `{"event":"exit","pid":-1}`, "line 3: field pid: want an integer from 0"},
		{"fractional pid", `{"event":"exit","pid":1.5}`, "line 3: field pid: want an integer from 0"},
		{"bad fs", `{"event":"exec","pid":2,"ppid":1,"exe":"/x","fs":"nfs"}`, `line 3: field fs: unknown filesystem kind "nfs"`},
		{"pid not running", `{"event":"access","pid":9,"op":"file.read","path":"/x"}`, "line 3: field pid: process 9 is not running"},
		{"ppid not running", `{"event":"exec","pid":2,"ppid":9,"exe":"/usr/bin/ls"}`, "line 3: field ppid: process 9 is not running"},
		{"pid still running", `{"event":"exec","pid":1,"ppid":1,"exe":"/usr/bin/ls"}`, "line 3: field pid: process 1 is still running"},
		{"exist twice", `{"event":"exist","pid":1,"exe":"/x"}`, "line 3: field pid: process 1 is still running"},
		{"target not running", `{"event":"access","pid":1,"op":"mem.read","target":42}`, "line 3: field target: process 42 is not running"},
		{"exit unknown", `{"event":"exit","pid":5}`, "line 3: field pid: process 5 is not running"},
		{"empty exe", `{"event":"exec","pid":2,"ppid":1,"exe":""}`, "line 3: field exe: empty"},
		{"exec as access", `{"event":"access","pid":1,"op":"process.exec","path":"/x"}`, "line 3: field op: process.exec is not an access"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, host.Config{})
			n := 0
			trace := base + tc.line + "\n" + `{"event":"access","pid":1,"op":"file.read","path":"/etc/hosts"}` + "\n"
			err := r.Run(ctx, strings.NewReader(trace), func(*Result) error { n++; return nil })
			var le *LineError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a LineError containing %q", err, tc.want)
			}
			if n != 1 {
				t.Fatalf("%d decisions emitted, want exactly the 1 before the bad line", n)
			}
		})
	}
}

func TestBlankLinesAndUnknownFields(t *testing.T) {
	trace := "\n" + `{"event":"exist","pid":1,"exe":"/usr/bin/bash","comment":"ignored"}` + "\n   \n" +
		`{"event":"exec","pid":2,"exe":"/usr/bin/ls"}` + "\n" // no ppid: exec in place... of pid 2, which does not run
	r := newRunner(t, host.Config{})
	err := r.Run(ctx, strings.NewReader(trace), func(*Result) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "line 4: field pid: process 2 is not running") {
		t.Fatalf("got %v", err)
	}
}

func TestExecInPlaceKeepsZone(t *testing.T) {
	trace := `{"event":"exist","pid":1,"exe":"/usr/bin/firefox"}
{"event":"exec","pid":1,"exe":"/usr/bin/bash"}
{"event":"access","pid":1,"op":"file.write","path":"/etc/passwd"}
`
	r := newRunner(t, host.Config{})
	var outs []Output
	if err := r.Run(ctx, strings.NewReader(trace), func(res *Result) error { outs = append(outs, res.Output()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].Zone != "guarded" || outs[0].ChildZone != "guarded" || outs[1].Verdict != "deny" {
		t.Fatalf("got %+v: a guarded process must stay guarded across exec in place", outs)
	}
}

func TestPIDReuse(t *testing.T) {
	trace := `{"event":"exist","pid":1,"exe":"/usr/bin/bash"}
{"event":"exec","pid":2,"ppid":1,"exe":"/usr/bin/evince"}
{"event":"exit","pid":2}
{"event":"exec","pid":2,"ppid":1,"exe":"/usr/bin/vim"}
{"event":"access","pid":2,"op":"file.write","path":"/etc/hosts"}
`
	r := newRunner(t, host.Config{})
	var outs []Output
	if err := r.Run(ctx, strings.NewReader(trace), func(res *Result) error { outs = append(outs, res.Output()); return nil }); err != nil {
		t.Fatal(err)
	}
	if outs[0].ChildZone != "guarded" || outs[1].ChildZone != "system" || outs[2].Verdict != "allow" || outs[2].Zone != "system" {
		t.Fatalf("got %+v: a reused pid must not inherit the old process's zone", outs)
	}
}

func TestTextEscapesControlCharacters(t *testing.T) {
	trace := `{"event":"exist","pid":1,"exe":"/usr/bin/firefox"}
{"event":"access","pid":1,"op":"file.write","path":"/etc/\u001b[2Jevil"}
`
	r := newRunner(t, host.Config{})
	var b strings.Builder
	if err := r.Run(ctx, strings.NewReader(trace), func(res *Result) error { return WriteText(&b, res) }); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsRune(b.String(), 0x1b) || !strings.Contains(b.String(), `/etc/\x1b[2Jevil`) {
		t.Fatalf("control character reached the terminal output:\n%q", b.String())
	}
}

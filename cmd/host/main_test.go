package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lineage.dev/lineage/plugins/builtin"
)

const origin = "../../testdata/scenarios/origin.jsonl"

func TestMain(m *testing.M) {
	// One compilation cache for the whole test binary, away from the
	// user's: each command run loads the built-in plugin.
	dir, err := os.MkdirTemp("", "lineage-cmd-test")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runHost(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"replay", "--help"}, {"decide", "--help"}, {"explain", "--help"},
		{"plugin", "--help"}, {"help", "replay"}, {"replay", "-h"}, {"conformance", "--help"},
	} {
		r := runHost(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") && !strings.Contains(r.stdout, "usage") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := runHost(t, ""); r.code != 2 || !strings.Contains(r.stderr, "Usage") {
		t.Errorf("no arguments: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runHost(t, "", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestReplayJSON(t *testing.T) {
	r := runHost(t, "", "replay", origin)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 21 {
		t.Fatalf("%d output lines, want 21 (one per exec and access line)", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		for _, f := range []string{"line", "pid", "op", "verdict", "zone", "cached"} {
			if _, ok := m[f]; !ok {
				t.Errorf("%q lacks %q", l, f)
			}
		}
		if m["op"] == "process.exec" && m["verdict"] == "allow" && m["child_zone"] == nil {
			t.Errorf("%q: an allowed exec lacks child_zone", l)
		}
	}
}

func TestReplayStdinAndText(t *testing.T) {
	trace, err := os.ReadFile(origin)
	if err != nil {
		t.Fatal(err)
	}
	r := runHost(t, string(trace), "replay", "--format", "text", "-")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"DENY", "registry.write", "lineage: powershell.exe(500) <- AcroRd32.exe(400) <- firefox.exe(300) <- OUTLOOK.EXE(200)", "OUTLOOK.EXE"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestReplayBadLine(t *testing.T) {
	trace := `{"event":"exist","pid":1,"exe":"/usr/bin/bash"}
{"event":"access","pid":1,"op":"file.read","path":"/etc/hosts"}
{"event":"access","pid":1,"op":"file.read"}
{"event":"access","pid":1,"op":"file.read","path":"/etc/hosts"}
`
	r := runHost(t, trace, "replay", "-")
	if r.code == 0 || !strings.Contains(r.stderr, "line 3: field path: missing") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "\n"); n != 1 {
		t.Fatalf("%d decisions printed, want the 1 before the bad line", n)
	}
}

func TestReplayFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "want one TRACE argument"},
		{[]string{"replay", "--format", "xml", origin}, `unknown format "xml"`},
		{[]string{"replay", "--mode", "loud", origin}, `unknown mode "loud"`},
		{[]string{"replay", "--nope", origin}, "flag provided but not defined: -nope"},
		{[]string{"replay", "/does/not/exist.jsonl"}, "no such file"},
		{[]string{"replay", "--plugin", "/does/not/exist.wasm", origin}, "no such file"},
	}
	for _, tc := range tests {
		r := runHost(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		config, want string
	}{
		{`{"mode":"loud"}`, `key mode: unknown mode "loud"`},
		{`{"mdoe":"audit"}`, `unknown key "mdoe"`},
		{`{"limits":{"call_deadline":"soon"}}`, `key limits.call_deadline: "soon" is not a positive duration`},
		{`{"limits":{"memory_mib":"big"}}`, `key limits.memory_mib: want int`},
		{`{"failure_verdicts":{"guarded":"maybe"}}`, `key failure_verdicts.guarded: "maybe": want allow or deny`},
		{`{"plugin_config":{"zonez":{}}}`, "key plugin_config.zonez: no loaded plugin has that name"},
		{"{\n  \"mode\": \"audit\",\n  oops\n}", "line 3, column 3: invalid JSON"},
		{`{"plugin_config":{"zones":{"guarded_tcp_ports":[70000]}}}`, "guarded_tcp_ports"},
	}
	for i, tc := range tests {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runHost(t, "", "replay", "--config", path, origin)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%d %s: exit %d, stderr %q, want %q", i, tc.config, r.code, r.stderr, tc.want)
		}
	}
}

func TestConfigAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.json")
	os.WriteFile(path, []byte(`{"mode":"audit"}`), 0o644)
	r := runHost(t, "", "replay", "--config", path, origin)
	if r.code != 0 || strings.Count(r.stdout, `"enforced":false`) != 7 {
		t.Fatalf("exit %d, stderr %q: want 7 unenforced denials in:\n%s", r.code, r.stderr, r.stdout)
	}
}

func TestDecide(t *testing.T) {
	chain := `C:\Windows\explorer.exe>C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE>C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`
	tests := []struct {
		args    []string
		code    int
		verdict string
	}{
		{[]string{"decide", "--chain", chain, `{"op":"registry.write","key":"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\x"}`}, 1, "deny"},
		{[]string{"decide", "--chain", chain, `{"op":"registry.read","key":"HKLM\\Software"}`}, 0, "allow"},
		{[]string{"decide", "--chain", `C:\Windows\explorer.exe`, `{"op":"registry.write","key":"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\x"}`}, 0, "allow"},
		{[]string{"decide", "--mode", "audit", "--chain", chain, `{"op":"mem.write","target":1000}`}, 0, "deny"},
		{[]string{"decide", "--chain", chain, `{"exe":"C:\\Users\\bob\\payload.exe"}`}, 1, "deny"},
		{[]string{"decide", "--trace", origin, `{"pid":500,"op":"net.connect","proto":"tcp","addr":"198.51.100.1","port":443}`}, 1, ""}, // pid 500 exited at the end of the trace
	}
	for i, tc := range tests {
		r := runHost(t, "", tc.args...)
		if tc.verdict == "" {
			if r.code != 2 || !strings.Contains(r.stderr, "process 500 is not running") {
				t.Errorf("%d: exit %d, stderr %q", i, r.code, r.stderr)
			}
			continue
		}
		var o map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &o); err != nil || r.code != tc.code || o["verdict"] != tc.verdict {
			t.Errorf("%d %v: exit %d (want %d), stdout %q, stderr %q", i, tc.args[len(tc.args)-1], r.code, tc.code, r.stdout, r.stderr)
		}
	}
	for _, bad := range [][]string{
		{"decide", "--chain", "a>>b", `{"op":"file.read","path":"/x"}`},
		{"decide", "--chain", "/usr/bin/bash", `not json`},
		{"decide", "--chain", "/usr/bin/bash", `{"op":"file.read"}`},
		{"decide", "--chain", "/usr/bin/bash", "--trace", origin, `{"op":"file.read","path":"/x"}`},
		{"decide", `{"op":"file.read","path":"/x"}`},
	} {
		if r := runHost(t, "", bad...); r.code != 2 || r.stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", bad, r.code, r.stderr)
		}
	}
}

func TestExplain(t *testing.T) {
	r := runHost(t, "", "explain", "--trace", origin, "--line", "11")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"verdict:  deny (enforced)", "rule:", "reason:", "plugin:   zones", "cached:   no", "scope:", "lineage:", "OUTLOOK.EXE(200) [guarded] rule", "ancestry: powershell.exe(500) <- AcroRd32.exe(400) <- firefox.exe(300) <- OUTLOOK.EXE(200) <- explorer.exe(100) <- (ancestry unknown)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("explain lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runHost(t, "", "explain", "--json", "--trace", origin, "--line", "21")
	var o map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	if o["scope"] == nil || o["lineage"] == nil {
		t.Errorf("explain --json lacks scope or lineage: %s", r.stdout)
	}
	if r := runHost(t, "", "explain", "--line", "3"); r.code != 2 || !strings.Contains(r.stderr, "--line needs --trace") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runHost(t, "", "explain", "--trace", origin, "--line", "99"); r.code != 2 || !strings.Contains(r.stderr, "no event on that line") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPluginInspect(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "zones.wasm")
	os.WriteFile(good, builtin.Zones, 0o644)
	r := runHost(t, "", "plugin", "inspect", good)
	if r.code != 0 || !strings.Contains(r.stdout, "name:     zones") || !strings.Contains(r.stdout, "load:     ok") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(dir, "bad.wasm")
	os.WriteFile(bad, []byte("MZ\x90\x00"), 0o644)
	r = runHost(t, "", "plugin", "inspect", "--json", bad)
	if r.code != 2 || !strings.Contains(r.stdout, `"loadable": false`) || !strings.Contains(r.stderr, "not a WebAssembly module") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runHost(t, "", "plugin", "frob", good); r.code != 2 {
		t.Fatalf("unknown subcommand: exit %d", r.code)
	}
}

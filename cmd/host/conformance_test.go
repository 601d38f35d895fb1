package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lineage.dev/lineage/conformance"
	"lineage.dev/lineage/plugins/builtin"
)

const corpusDir = "../../conformance/testdata/"

func TestConformanceCommand(t *testing.T) {
	zones := filepath.Join(t.TempDir(), "zones.wasm")
	if err := os.WriteFile(zones, builtin.Zones, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "../../plugins/zones/config.example.json"
	r := runHost(t, "", "conformance", "--config", cfg, zones)
	if r.code != 0 || !strings.Contains(r.stdout, "PASSED: 15 passed, 0 failed, 0 skipped") {
		t.Fatalf("zones: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runHost(t, "", "conformance", "--json", "--only", "static,vectors", zones)
	var rep conformance.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.Passed || len(rep.Results) != len(conformance.Checks) {
		t.Fatalf("--json: exit %d, %v, %+v\n%s", r.code, err, rep, r.stderr)
	}
	for _, res := range rep.Results {
		if want := strings.HasPrefix(res.Name, "static.") || res.Name == "vectors"; want != (res.Status == conformance.Pass) {
			t.Errorf("--only static,vectors: %s %s", res.Name, res.Status)
		}
	}

	// A broken plugin fails with exit status 1 and names the problem.
	r = runHost(t, "", "conformance", corpusDir+"decide-trap.wasm")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  vectors") || !strings.Contains(r.stdout, "trap: wasm error: unreachable") {
		t.Fatalf("decide-trap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runHost(t, "", "conformance", corpusDir+"wrong-major.wasm")
	if r.code != 1 || !strings.Contains(r.stdout, "plugin speaks ABI 2.0, this host speaks 1.0") {
		t.Fatalf("wrong-major: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Bad use is exit status 2.
	for _, args := range [][]string{
		{"conformance"},
		{"conformance", "--only", "nosuch", zones},
		{"conformance", "/nonexistent.wasm"},
	} {
		if r := runHost(t, "", args...); r.code != 2 || r.stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r := runHost(t, "", "conformance", "--help"); r.code != 0 || !strings.Contains(r.stdout, "semantics.inheritance") {
		t.Errorf("--help: exit %d\n%s", r.code, r.stdout)
	}
}

// host replay --plugin refuses every plugin that cannot load, naming the
// problem, and contains every plugin that misbehaves when called: each
// decision gets the failure verdict and the replay goes on.
func TestReplayBrokenPlugins(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "t.jsonl")
	lines := `{"event":"exist","pid":1,"exe":"/usr/bin/bash"}` + "\n" +
		strings.Repeat(`{"event":"access","pid":1,"op":"file.write","path":"/etc/x"}`+"\n", 5) +
		`{"event":"access","pid":1,"op":"net.connect","proto":"tcp","addr":"10.0.0.1","port":443}` + "\n"
	if err := os.WriteFile(trace, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, refusal string }{
		{"not-wasm", "not a WebAssembly module"},
		{"empty", "file is empty"},
		{"truncated", "runs past the end of the module"},
		{"no-exports", "missing export lineage_buffer"},
		{"wrong-major", "plugin speaks ABI 2.0, this host speaks 1.0"},
		{"start-loop", "start function: deadline"},
		{"unknown-import", "env.system"},
		{"huge-memory", "declares an initial memory of 16384 pages"},
		{"zero-memory", "lies outside memory of 0 bytes"},
		{"decide-loop", ""},
		{"decide-trap", ""},
		{"memory-bomb", ""},
		{"recursion", ""},
		{"garbage-verdict", ""},
		{"garbage-length", ""},
		{"garbage-offset", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := runHost(t, "", "replay", "--plugin", corpusDir+tc.file+".wasm", trace)
			if strings.Contains(r.stderr, "panic") {
				t.Fatalf("panic:\n%s", r.stderr)
			}
			if tc.refusal != "" {
				if r.code != 2 || !strings.Contains(r.stderr, "invalid plugin") || !strings.Contains(r.stderr, tc.refusal) {
					t.Fatalf("exit %d, stderr %q: want a refusal mentioning %q", r.code, r.stderr, tc.refusal)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			out := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(out) != 6 {
				t.Fatalf("%d decisions, want 6:\n%s", len(out), r.stdout)
			}
			for _, l := range out {
				var d struct {
					Verdict string `json:"verdict"`
					Failure bool   `json:"failure"`
				}
				if err := json.Unmarshal([]byte(l), &d); err != nil || d.Verdict != "deny" || !d.Failure {
					t.Fatalf("decision %s: want the failure verdict (deny)", l)
				}
			}
		})
	}
}

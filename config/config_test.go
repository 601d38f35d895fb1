package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

func TestDefaults(t *testing.T) {
	for _, in := range []string{"", "  \n", "{}"} {
		s, err := Parse([]byte(in), "/etc/lineage")
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if s.Engine.Mode != host.Enforce || len(s.Plugins) != 0 || s.Limits != (host.Limits{}) {
			t.Fatalf("%q: %+v", in, s)
		}
	}
}

func TestFull(t *testing.T) {
	in := `{
	  "mode": "audit",
	  "plugins": ["zones.wasm", "/opt/lineage/extra.wasm"],
	  "plugin_config": {"zones": {"guarded_apps": ["mutt"]}},
	  "failure_verdicts": {"system": "allow", "guarded": "deny", "*": "allow"},
	  "abstain_verdict": "deny",
	  "unclassified_zone": "unknown",
	  "failure_zone": "quarantine",
	  "cache_entries": 1024,
	  "limits": {"call_deadline": "5ms", "init_deadline": "1s", "memory_mib": 32, "instances": 4, "quarantine_after": 9, "quarantine_for": "1m"}
	}`
	s, err := Parse([]byte(in), "/etc/lineage")
	if err != nil {
		t.Fatal(err)
	}
	e := s.Engine
	if e.Mode != host.Audit || e.AbstainVerdict != abi.Deny || e.UnclassifiedZone != "unknown" || e.FailureZone != "quarantine" ||
		e.CacheEntries != 1024 || e.DefaultFailureVerdict != abi.Allow || e.FailureVerdicts["guarded"] != abi.Deny || e.FailureVerdicts["system"] != abi.Allow {
		t.Fatalf("engine %+v", e)
	}
	if s.Plugins[0] != "/etc/lineage/zones.wasm" || s.Plugins[1] != "/opt/lineage/extra.wasm" {
		t.Fatalf("plugins %v: relative paths resolve against the config's folder", s.Plugins)
	}
	if string(s.PluginConfig["zones"]) != `{"guarded_apps": ["mutt"]}` {
		t.Fatalf("plugin config %q: the raw JSON is handed over", s.PluginConfig["zones"])
	}
	want := host.Limits{CallDeadline: 5 * time.Millisecond, InitDeadline: time.Second, MemoryBytes: 32 << 20, Instances: 4, QuarantineAfter: 9, QuarantineFor: time.Minute}
	if s.Limits != want {
		t.Fatalf("limits %+v, want %+v", s.Limits, want)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"mode":"loud"}`, `key mode: unknown mode "loud"`},
		{`{"mdoe":"audit"}`, `unknown key "mdoe"`},
		{`{"limits":{"callDeadline":"1s"}}`, `unknown key "callDeadline"`},
		{`{"plugins":[""]}`, "key plugins[0]: empty path"},
		{`{"plugins":"zones.wasm"}`, "key plugins: want []string"},
		{`{"plugin_config":{"Bad Name":{}}}`, `key plugin_config: "Bad Name" is not a plugin name`},
		{`{"failure_verdicts":{"guarded":"maybe"}}`, `key failure_verdicts.guarded: "maybe": want allow or deny`},
		{`{"failure_verdicts":{"Guarded":"deny"}}`, `key failure_verdicts: "Guarded" is not a zone name`},
		{`{"abstain_verdict":"abstain"}`, `key abstain_verdict: "abstain": want allow or deny`},
		{`{"unclassified_zone":"Not A Zone"}`, `key unclassified_zone: "Not A Zone" is not a zone name`},
		{`{"cache_entries":-1}`, "key cache_entries: -1 is out of range"},
		{`{"cache_entries":4000000000}`, "key cache_entries: 4000000000 is out of range (0 for the default, up to 16777216)"},
		{`{"mode":"audit"}}`, "line 1, column 17: trailing data"},
		{`{"limits":{"call_deadline":"-5ms"}}`, `key limits.call_deadline: "-5ms" is not a positive duration`},
		{`{"limits":{"memory_mib":99999}}`, "key limits.memory_mib: 99999 is out of range"},
		{`{"limits":{"instances":"two"}}`, "key limits.instances: want int"},
		{"{\n\"mode\": \"audit\",\n}", "line 3, column 1: invalid JSON"},
		{`{"mode":"audit"} {}`, "trailing data"},
		{`{"mode":`, "unexpected end"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.in), ".")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestLoadNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.json")
	os.WriteFile(path, []byte(`{"mode":1}`), 0o644)
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": key mode: want string") {
		t.Fatalf("got %v", err)
	}
	if _, err := Load(path + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestAgent(t *testing.T) {
	s, err := Parse([]byte(`{"agent": {"marks": ["srv", "/home"], "filesystems": ["/"], "deadline": "250ms",
	  "deadline_verdict": "allow", "queue_full_verdict": "allow", "queue": 64, "workers": 8, "ignore_marks": false}}`), "/etc/lineage")
	if err != nil {
		t.Fatal(err)
	}
	want := AgentSettings{Marks: []string{"/etc/lineage/srv", "/home"}, Filesystems: []string{"/"}, Deadline: 250 * time.Millisecond,
		DeadlineAllow: true, QueueFullAllow: true, Queue: 64, Workers: 8, NoIgnoreMarks: true}
	if got := s.Agent; got.Deadline != want.Deadline || got.DeadlineAllow != want.DeadlineAllow || got.QueueFullAllow != want.QueueFullAllow ||
		got.Queue != want.Queue || got.Workers != want.Workers || got.NoIgnoreMarks != want.NoIgnoreMarks ||
		strings.Join(got.Marks, ",") != strings.Join(want.Marks, ",") || strings.Join(got.Filesystems, ",") != strings.Join(want.Filesystems, ",") {
		t.Fatalf("agent %+v, want %+v", got, want)
	}
	d, err := Parse([]byte(`{"agent": {"marks": ["/srv"]}}`), ".")
	if err != nil || d.Agent.Deadline != 100*time.Millisecond || d.Agent.DeadlineAllow || d.Agent.NoIgnoreMarks {
		t.Fatalf("defaults %+v, %v: want 100ms, deny, ignore marks on", d.Agent, err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"agent": {"marks": [""]}}`, "key agent.marks[0]: empty path"},
		{`{"agent": {"deadline": "20s"}}`, `key agent.deadline: "20s" is not a duration between 0 and 10s`},
		{`{"agent": {"deadline_verdict": "maybe"}}`, `key agent.deadline_verdict: "maybe": want allow or deny`},
		{`{"agent": {"workers": 1000}}`, "key agent.workers: 1000 is out of range"},
		{`{"agent": {"ignore_marks": "no"}}`, "key agent.ignore_marks: want bool"},
		{`{"agent": {"ignore_mark": true}}`, `unknown key "ignore_mark"`},
	} {
		if _, err := Parse([]byte(tc.in), "."); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

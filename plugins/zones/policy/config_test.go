package policy

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if _, err := New(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	a, b := DefaultConfig(), DefaultConfig()
	a.SystemSpace[0] = "/changed/"
	if b.SystemSpace[0] != "/usr/" {
		t.Error("DefaultConfig shares its slices between calls")
	}
}

func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../config.example.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("config.example.json parses to\n%+v\nwant DefaultConfig()\n%+v", got, want)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, in := range []string{"", " ", "\n\t \r\n"} {
		got, err := ParseConfig([]byte(in))
		if err != nil || !reflect.DeepEqual(got, DefaultConfig()) {
			t.Errorf("ParseConfig(%q) = %+v, %v; want the defaults", in, got, err)
		}
	}
	got, err := ParseConfig([]byte("{}"))
	if err != nil || !reflect.DeepEqual(got, DefaultConfig()) {
		t.Errorf("ParseConfig({}) = %+v, %v; want the defaults", got, err)
	}
}

// TestParseConfigOverrides replaces each key in turn and checks that only
// that setting changes.
func TestParseConfigOverrides(t *testing.T) {
	tests := []struct {
		json string
		set  func(*Config)
	}{
		{`{"system_space": ["/usr/", "C:/Tools/"]}`, func(c *Config) { c.SystemSpace = []string{"/usr/", "C:/Tools/"} }},
		{`{"system_space": []}`, func(c *Config) { c.SystemSpace = []string{} }},
		{`{"private_folders": ["/srv/*/secrets/", "\\\\files\\hr\\"]}`, func(c *Config) { c.PrivateFolders = []string{"/srv/*/secrets/", `\\files\hr\`} }},
		{`{"guarded_apps": ["mutt", "Teams.exe"]}`, func(c *Config) { c.GuardedApps = []string{"mutt", "Teams.exe"} }},
		{`{"protected_registry": ["HKEY_CURRENT_USER\\Software\\X", "hklm"]}`, func(c *Config) { c.ProtectedRegistry = []string{`HKEY_CURRENT_USER\Software\X`, "hklm"} }},
		{`{"guarded_tcp_ports": [443, 1, 65535]}`, func(c *Config) { c.GuardedTCPPorts = []uint16{443, 1, 65535} }},
		{`{"guarded_udp_ports": []}`, func(c *Config) { c.GuardedUDPPorts = []uint16{} }},
		{`{"allow_ttl_ms": 0}`, func(c *Config) { c.AllowTTLMillis = 0 }},
		{`{"deny_ttl_ms": 86400000}`, func(c *Config) { c.DenyTTLMillis = 86400000 }},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tt.set(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ json, want string }{
		{`{"guarded_tcp_ports": [25, 53, 70000]}`, "config: guarded_tcp_ports[2]: 70000 is not a port (want 1..65535)"},
		{`{"guarded_udp_ports": [0]}`, "config: guarded_udp_ports[0]: 0 is not a port (want 1..65535)"},
		{`{"guarded_tcp_ports": [-1]}`, "config: guarded_tcp_ports[0]: -1 is not a port (want 1..65535)"},
		{`{"guarded_tcp_ports": [80.5]}`, "config: guarded_tcp_ports[0]: 80.5 is not a port (want 1..65535)"},
		{`{"guarded_tcp_ports": ["80"]}`, `config: guarded_tcp_ports[0]: "80" is not a port (want 1..65535)`},
		{`{"guarded_tcp_ports": 80}`, "config: guarded_tcp_ports: got 80, want a list of ports"},
		{`{"guarded_tcp_ports": null}`, "config: guarded_tcp_ports: got null, want a list of ports"},
		{`{"system_space": "/usr/"}`, `config: system_space: got "/usr/", want a list of strings`},
		{`{"system_space": ["/usr/", 5]}`, "config: system_space[1]: got 5, want a string"},
		{`{"system_space": [""]}`, "config: system_space[0]: empty string"},
		{`{"system_space": ["usr/"]}`, `config: system_space[0]: "usr/" is not an absolute path (want /..., C:\... or \\server\share\...)`},
		{`{"system_space": ["/usr/*/"]}`, `config: system_space[0]: "/usr/*/" has a wildcard * (system space entries are plain prefixes)`},
		{`{"system_space": ["\\\\server\\share\\"]}`, `config: system_space[0]: "\\\\server\\share\\" is a UNC path, which is network space, never system space`},
		{`{"system_space": ["/usr//bin/"]}`, `config: system_space[0]: "/usr//bin/" has an empty path component (a doubled separator)`},
		{`{"system_space": ["/usr/../tmp/"]}`, `config: system_space[0]: "/usr/../tmp/" has a "." or ".." component (want a canonical path)`},
		{`{"system_space": [" /usr/"]}`, `config: system_space[0]: " /usr/" has leading or trailing white space`},
		{`{"system_space": ["/usr/\u0007"]}`, `config: system_space[0]: "/usr/\a" contains a control character`},
		{`{"private_folders": ["/home/a*/"]}`, `config: private_folders[0]: "/home/a*/" has * inside a component (want * alone as a whole component, as in /home/*/.ssh/)`},
		{`{"private_folders": ["/home/**/"]}`, `config: private_folders[0]: "/home/**/" has * inside a component (want * alone as a whole component, as in /home/*/.ssh/)`},
		{`{"private_folders": ["*/.ssh/"]}`, `config: private_folders[0]: "*/.ssh/" is not an absolute path (want /..., C:\... or \\server\share\...)`},
		{`{"private_folders": ["\\\\*\\share\\"]}`, `config: private_folders[0]: "\\\\*\\share\\" names no server (want \\server\share\...)`},
		{`{"private_folders": ["\\\\?\\C:\\x\\"]}`, `config: private_folders[0]: "\\\\?\\C:\\x\\" is a Windows device path (want C:\... or \\server\share\...)`},
		{`{"guarded_apps": ["/usr/bin/firefox"]}`, `config: guarded_apps[0]: "/usr/bin/firefox" contains a path separator (want a base name such as firefox.exe)`},
		{`{"guarded_apps": ["fire*"]}`, `config: guarded_apps[0]: "fire*" has a wildcard * (want a plain base name)`},
		{`{"guarded_apps": ["firefox", ""]}`, "config: guarded_apps[1]: empty string"},
		{`{"guarded_apps": [".."]}`, `config: guarded_apps[0]: ".." is not a file name`},
		{`{"protected_registry": ["HKCR\\CLSID"]}`, `config: protected_registry[0]: "HKCR\\CLSID" does not start with HKLM\ or HKCU\ (or HKEY_LOCAL_MACHINE\, HKEY_CURRENT_USER\)`},
		{`{"protected_registry": ["HKCU\\\\Run"]}`, `config: protected_registry[0]: "HKCU\\\\Run" has an empty key name (a doubled backslash)`},
		{`{"allow_ttl_ms": 86400001}`, "config: allow_ttl_ms: 86400001 is not a cache lifetime (want milliseconds 0..86400000)"},
		{`{"deny_ttl_ms": "10m"}`, `config: deny_ttl_ms: "10m" is not a cache lifetime (want milliseconds 0..86400000)`},
		{`{"system_spaces": []}`, `config: unknown key "system_spaces" (want one of ` + configKeys + ")"},
		{`{"mode": "audit"}`, `config: unknown key "mode" (want one of ` + configKeys + ")"},
		{`{"guarded_apps": [], "guarded_apps": ["x"]}`, "config: guarded_apps: key appears more than once"},
		{`[]`, "config: got an array, want a JSON object"},
		{`"x"`, "config: got a string, want a JSON object"},
		{`null`, "config: got null, want a JSON object"},
		{`{"guarded_apps": []} {}`, `config: unexpected "{" after the config object`},
		{`{"guarded_apps": [}`, "config: invalid JSON at byte 17: invalid character '}' looking for beginning of value"},
		{`{"guarded_apps": []`, "config: invalid JSON: unexpected end of input"},
		{"{\"guarded_apps\": [\"\xff\"]}", "config: not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", err, tt.want)
			}
			var ce *ConfigError
			if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) {
				t.Errorf("%v does not wrap ErrConfig as a *ConfigError", err)
			}
		})
	}
}

// TestNewErrors checks that Go callers get the same checks as JSON.
func TestNewErrors(t *testing.T) {
	tests := []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.GuardedTCPPorts = []uint16{80, 0} }, "config: guarded_tcp_ports[1]: 0 is not a port (want 1..65535)"},
		{func(c *Config) { c.AllowTTLMillis = 1 << 31 }, "config: allow_ttl_ms: 2147483648 is not a cache lifetime (want milliseconds 0..86400000)"},
		{func(c *Config) { c.GuardedApps = []string{"a\xffb"} }, `config: guarded_apps[0]: "a\xffb" is not valid UTF-8`},
		{func(c *Config) { c.SystemSpace = []string{"C:"} }, `config: system_space[0]: "C:" is not an absolute path (want /..., C:\... or \\server\share\...)`},
		{func(c *Config) { c.PrivateFolders = []string{"/" + strings.Repeat("a", 5000)} }, "config: private_folders[0]: 5001 bytes is too long (want at most 4096)"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.set(&c)
		_, err := New(c)
		if err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

// TestConfigJSONRoundTrip: what encoding/json writes, ParseConfig reads
// back unchanged, so tools can generate configs from Config values.
func TestConfigJSONRoundTrip(t *testing.T) {
	for _, c := range []Config{DefaultConfig(), customConfig()} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseConfig(b)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of %s: got %+v, %v", b, got, err)
		}
	}
}

// TestConfigChangesDecisions checks that each list is really used.
func TestConfigChangesDecisions(t *testing.T) {
	c, err := ParseConfig([]byte(`{
		"system_space": ["/nix/store/"],
		"private_folders": ["/srv/*/secrets/"],
		"guarded_apps": ["mutt"],
		"protected_registry": ["HKCU\\Software\\Vendor"],
		"guarded_tcp_ports": [8443],
		"guarded_udp_ports": [5353],
		"allow_ttl_ms": 1000,
		"deny_ttl_ms": 0
	}`))
	if err != nil {
		t.Fatal(err)
	}
	p := mustNew(t, c)
	if got := p.Classify(absReq("/nix/store/abc-mutt/bin/mutt")); got.Zone != ZoneGuarded {
		t.Errorf("mutt: %s", got.Zone)
	}
	if got := p.Classify(absReq("/usr/bin/firefox")); got.Zone != ZoneUntrusted {
		t.Errorf("firefox outside the new system space: %s", got.Zone)
	}
	g := func(op string, obj string, port uint16) string {
		req := decideReq(op, obj, port)
		d := p.Decide(&req)
		want := uint32(1000)
		if d.Verdict == abi.Deny {
			want = 0
		}
		if d.Scope.TTLMillis != want {
			t.Errorf("%s %s: ttl %d, want %d", op, obj, d.Scope.TTLMillis, want)
		}
		return d.Rule
	}
	for _, tt := range []struct {
		op, obj string
		port    uint16
		want    string
	}{
		{"process.exec", "/nix/store/x/bin/sh", 0, RuleAllowSystemSpace},
		{"process.exec", "/usr/bin/sh", 0, RuleExecZeroTrust},
		{"file.read", "/srv/www/secrets/key", 0, RuleFilePrivate},
		{"file.read", "/home/bob/.ssh/id_rsa", 0, RuleAllowRead},
		{"registry.write", `HKCU\Software\Vendor\x`, 0, RuleRegistryProtected},
		{"registry.write", `HKLM\Software\x`, 0, RuleAllowRegistry},
		{"net.connect", "", 8443, RuleAllowPort},
		{"net.connect", "", 443, RuleNetPort},
		{"net.send", "", 5353, RuleAllowPort},
		{"net.send", "", 53, RuleNetPort},
	} {
		if got := g(tt.op, tt.obj, tt.port); got != tt.want {
			t.Errorf("%s %s %d: got %s, want %s", tt.op, tt.obj, tt.port, got, tt.want)
		}
	}
}

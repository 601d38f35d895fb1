package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"lineage.dev/lineage/abi"
)

// Default cache lifetimes of answers. Denies expire sooner so that a config
// mistake that blocks work heals without a reload.
const (
	DefaultAllowTTLMillis = 60 * 60 * 1000 // 1 hour
	DefaultDenyTTLMillis  = 10 * 60 * 1000 // 10 minutes
)

// Config is the policy's configuration: every list of REFERENCE-POLICY.md.
// Its JSON form is the plugin's config (see ParseConfig and
// plugins/zones/config.example.json).
type Config struct {
	// SystemSpace lists folder prefixes whose executables may start:
	// absolute Linux paths (/usr/) or Windows drive paths (C:\Windows\).
	// A prefix covers the folder itself and everything under it.
	SystemSpace []string `json:"system_space"`
	// PrivateFolders lists folder patterns that guarded and untrusted
	// processes may neither read nor write. "*" matches exactly one path
	// component; a pattern covers the folder and everything under it.
	PrivateFolders []string `json:"private_folders"`
	// GuardedApps lists executable base names whose processes, and all
	// their descendants, are guarded.
	GuardedApps []string `json:"guarded_apps"`
	// ProtectedRegistry lists registry keys (under HKLM\ or HKCU\) that
	// guarded processes may not write; each covers the key and its subkeys.
	ProtectedRegistry []string `json:"protected_registry"`
	// GuardedTCPPorts and GuardedUDPPorts are the only ports guarded
	// processes may connect to (TCP) or send to (UDP).
	GuardedTCPPorts []uint16 `json:"guarded_tcp_ports"`
	GuardedUDPPorts []uint16 `json:"guarded_udp_ports"`
	// AllowTTLMillis and DenyTTLMillis are how long the host may cache an
	// allow or a deny; 0 disables caching. At most abi.MaxTTLMillis.
	AllowTTLMillis uint32 `json:"allow_ttl_ms"`
	DenyTTLMillis  uint32 `json:"deny_ttl_ms"`
}

// DefaultConfig returns the defaults of REFERENCE-POLICY.md. Each call
// returns fresh slices, so callers may modify the result.
func DefaultConfig() Config {
	return Config{
		SystemSpace: []string{
			"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/", "/etc/", "/boot/",
			`C:\Windows\`, `C:\Program Files\`, `C:\Program Files (x86)\`,
		},
		PrivateFolders: []string{
			"/home/*/.ssh/", "/root/.ssh/", "/home/*/.gnupg/", `C:\Users\*\Documents\Private\`,
		},
		GuardedApps: []string{
			"outlook.exe", "thunderbird.exe", "firefox.exe", "chrome.exe", "msedge.exe",
			"iexplore.exe", "acrord32.exe", "acrobat.exe", "foxitreader.exe", "winword.exe",
			"excel.exe", "powerpnt.exe", "wmplayer.exe", "vlc.exe",
			"thunderbird", "evolution", "firefox", "firefox-esr", "chromium", "google-chrome",
			"evince", "okular", "soffice.bin", "vlc",
		},
		ProtectedRegistry: []string{
			`HKLM\`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\Run`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\RunOnce`,
			`HKCU\Software\Microsoft\Windows\CurrentVersion\Policies`,
			`HKCU\Software\Microsoft\Windows NT\CurrentVersion\Winlogon`,
			`HKCU\Environment`,
			`HKCU\Software\Classes\`,
		},
		GuardedTCPPorts: []uint16{25, 53, 80, 110, 143, 443, 465, 587, 993, 995},
		GuardedUDPPorts: []uint16{53, 123, 443},
		AllowTTLMillis:  DefaultAllowTTLMillis,
		DenyTTLMillis:   DefaultDenyTTLMillis,
	}
}

// ErrConfig is wrapped by every error of ParseConfig and New, so callers
// can tell a bad config from other failures with errors.Is.
var ErrConfig = errors.New("invalid config")

// ConfigError says which key (with its list index) is wrong and why.
type ConfigError struct {
	Key string // e.g. "guarded_tcp_ports[2]"; empty for the document as a whole
	Msg string // names the offending value and what was expected
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

func (e *ConfigError) Unwrap() error { return ErrConfig }

func cfgErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// configKeys lists the keys ParseConfig accepts, for the unknown-key error.
const configKeys = "system_space, private_folders, guarded_apps, protected_registry, guarded_tcp_ports, guarded_udp_ports, allow_ttl_ms, deny_ttl_ms"

// ParseConfig parses the plugin's JSON config. Empty or whitespace-only
// input yields DefaultConfig(). Otherwise the input must be one JSON object;
// each key present replaces that setting's default, and unknown keys,
// repeated keys and bad values are errors that name the key and the value.
func ParseConfig(b []byte) (Config, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return DefaultConfig(), nil
	}
	if !utf8.Valid(b) {
		// encoding/json would silently replace bad bytes, changing paths.
		return Config{}, cfgErr("", "not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return Config{}, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Config{}, cfgErr("", "got %s, want a JSON object", describeToken(tok))
	}
	c := DefaultConfig()
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Config{}, jsonErr(err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Config{}, jsonErr(err)
		}
		if seen[key] {
			return Config{}, cfgErr(key, "key appears more than once")
		}
		seen[key] = true
		switch key {
		case "system_space":
			c.SystemSpace, err = stringList(key, raw)
		case "private_folders":
			c.PrivateFolders, err = stringList(key, raw)
		case "guarded_apps":
			c.GuardedApps, err = stringList(key, raw)
		case "protected_registry":
			c.ProtectedRegistry, err = stringList(key, raw)
		case "guarded_tcp_ports":
			c.GuardedTCPPorts, err = portList(key, raw)
		case "guarded_udp_ports":
			c.GuardedUDPPorts, err = portList(key, raw)
		case "allow_ttl_ms":
			c.AllowTTLMillis, err = ttl(key, raw)
		case "deny_ttl_ms":
			c.DenyTTLMillis, err = ttl(key, raw)
		default:
			return Config{}, cfgErr("", "unknown key %q (want one of %s)", key, configKeys)
		}
		if err != nil {
			return Config{}, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Config{}, jsonErr(err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return Config{}, jsonErr(err)
		}
		return Config{}, cfgErr("", "unexpected %s after the config object", describeToken(tok))
	}
	// New performs the value checks, so Go callers and JSON get the same.
	if _, err := New(c); err != nil {
		return Config{}, err
	}
	return c, nil
}

func jsonErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return cfgErr("", "invalid JSON at byte %d: %v", se.Offset, err)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return cfgErr("", "invalid JSON: unexpected end of input")
	}
	return cfgErr("", "invalid JSON: %v", err)
}

func describeToken(tok any) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// shown abbreviates a raw JSON value for an error message.
func shown(raw []byte) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 64 {
		s = clip(s, 61) + "..."
	}
	return s
}

func elements(key string, raw json.RawMessage, want string) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, cfgErr(key, "got %s, want a list of %s", shown(raw), want)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, cfgErr(key, "got %s, want a list of %s", shown(raw), want)
	}
	return elems, nil
}

func stringList(key string, raw json.RawMessage) ([]string, error) {
	elems, err := elements(key, raw, "strings")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		if len(e) == 0 || e[0] != '"' {
			return nil, cfgErr(fmt.Sprintf("%s[%d]", key, i), "got %s, want a string", shown(e))
		}
		if err := json.Unmarshal(e, &out[i]); err != nil {
			return nil, cfgErr(fmt.Sprintf("%s[%d]", key, i), "got %s, want a string", shown(e))
		}
	}
	return out, nil
}

func portList(key string, raw json.RawMessage) ([]uint16, error) {
	elems, err := elements(key, raw, "ports")
	if err != nil {
		return nil, err
	}
	out := make([]uint16, len(elems))
	for i, e := range elems {
		n, err := strconv.ParseUint(string(bytes.TrimSpace(e)), 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, cfgErr(fmt.Sprintf("%s[%d]", key, i), "%s is not a port (want 1..65535)", shown(e))
		}
		out[i] = uint16(n)
	}
	return out, nil
}

func ttl(key string, raw json.RawMessage) (uint32, error) {
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 32)
	if err != nil || n > abi.MaxTTLMillis {
		return 0, cfgErr(key, "%s is not a cache lifetime (want milliseconds 0..%d)", shown(raw), abi.MaxTTLMillis)
	}
	return uint32(n), nil
}

// checkText rejects strings that cannot be meant: they would never match a
// path the kernel reports, or would corrupt reasons and logs.
func checkText(key, s string) error {
	switch {
	case s == "":
		return cfgErr(key, "empty string")
	case !utf8.ValidString(s):
		return cfgErr(key, "%q is not valid UTF-8", s)
	case strings.TrimSpace(s) != s:
		return cfgErr(key, "%q has leading or trailing white space", s)
	case len(s) > abi.MaxObject:
		return cfgErr(key, "%d bytes is too long (want at most %d)", len(s), abi.MaxObject)
	}
	for _, r := range s {
		if badRune(r) {
			return cfgErr(key, "%q contains a control character", s)
		}
	}
	return nil
}

// Package config reads the host's JSON configuration file and turns it into
// engine and runtime settings. Every error names the file, the key and
// what was expected. It imports host and abi; it must not import kernel
// layers or wazero.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

// File is the configuration file's schema.
type File struct {
	// Mode is "enforce" (default) or "audit".
	Mode string `json:"mode"`
	// Plugins are wasm files, consulted in order; relative paths are
	// relative to the config file. Empty: the built-in zones plugin.
	Plugins []string `json:"plugins"`
	// PluginConfig maps a plugin name (its metadata name) to the JSON
	// value handed to its lineage_init as bytes.
	PluginConfig map[string]json.RawMessage `json:"plugin_config"`
	// FailureVerdicts maps a zone, or "*" for every other zone, to "allow"
	// or "deny": the verdict when a plugin fails.
	FailureVerdicts map[string]string `json:"failure_verdicts"`
	// AbstainVerdict applies when every plugin abstains: "allow" (default)
	// or "deny".
	AbstainVerdict   string `json:"abstain_verdict"`
	UnclassifiedZone string `json:"unclassified_zone"`
	FailureZone      string `json:"failure_zone"`
	CacheEntries     int    `json:"cache_entries"`
	Limits           Limits `json:"limits"`
	// Agent configures `host run`; the other commands ignore it.
	Agent Agent `json:"agent"`
}

// Agent is the "agent" object: what `host run` guards and how it answers
// the kernel.
type Agent struct {
	// Marks are the mount points whose files are guarded (fanotify
	// marks on each whole mount). Required by host run.
	Marks []string `json:"marks"`
	// Filesystems are paths whose whole filesystem is guarded, on every
	// mount of it in every mount namespace (bind mounts and containers'
	// copies included), which a mount mark does not cover.
	Filesystems []string `json:"filesystems"`
	// Deadline bounds every permission event (default "100ms"), whatever
	// the plugins do; DeadlineVerdict ("deny", the default, or "allow")
	// answers an event that misses it.
	Deadline        string `json:"deadline"`
	DeadlineVerdict string `json:"deadline_verdict"`
	// QueueFullVerdict answers an event that finds the decision queue
	// full ("deny", the default, or "allow"); Queue and Workers size it.
	QueueFullVerdict string `json:"queue_full_verdict"`
	Queue            int    `json:"queue"`
	Workers          int    `json:"workers"`
	// IgnoreMarks (default true) lets answers that hold for every
	// process and every object of their op become fanotify ignore marks,
	// so the kernel stops asking about those files until they change.
	IgnoreMarks *bool `json:"ignore_marks"`
}

// Limits is the "limits" object.
type Limits struct {
	CallDeadline    string `json:"call_deadline"` // Go duration, e.g. "20ms"
	InitDeadline    string `json:"init_deadline"`
	MemoryMiB       int    `json:"memory_mib"`
	Instances       int    `json:"instances"`
	QuarantineAfter int    `json:"quarantine_after"`
	QuarantineFor   string `json:"quarantine_for"`
}

// MaxCacheEntries bounds cache_entries: each entry costs a few hundred
// bytes, so this is a few GiB at most.
const MaxCacheEntries = 1 << 24

// Settings are a parsed, validated File.
type Settings struct {
	Engine       host.Config
	Limits       host.Limits
	Plugins      []string          // resolved paths; empty: built-in
	PluginConfig map[string][]byte // by plugin name
	Agent        AgentSettings
}

// AgentSettings are a parsed "agent" object.
type AgentSettings struct {
	Marks          []string // absolute, cleaned
	Filesystems    []string // absolute, cleaned
	Deadline       time.Duration
	DeadlineAllow  bool
	QueueFullAllow bool
	Queue, Workers int
	NoIgnoreMarks  bool
}

// Load reads and parses the file at path.
func Load(path string) (Settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Settings{}, err
	}
	s, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse parses config bytes; dir resolves relative plugin paths. Empty
// input yields the defaults.
func Parse(b []byte, dir string) (Settings, error) {
	var f File
	if len(bytes.TrimSpace(b)) > 0 {
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&f); err != nil {
			return Settings{}, jsonError(b, err)
		}
		if rest := bytes.TrimSpace(b[d.InputOffset():]); len(rest) > 0 {
			line, col := position(b, d.InputOffset())
			return Settings{}, fmt.Errorf("line %d, column %d: trailing data after the JSON object", line, col)
		}
	}
	return f.settings(dir)
}

func (f *File) settings(dir string) (Settings, error) {
	var s Settings
	var err error
	if s.Engine.Mode, err = host.ParseMode(f.Mode); err != nil {
		return s, keyErr("mode", err)
	}
	for i, p := range f.Plugins {
		if p == "" {
			return s, keyErr(fmt.Sprintf("plugins[%d]", i), errors.New("empty path"))
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		s.Plugins = append(s.Plugins, p)
	}
	s.PluginConfig = map[string][]byte{}
	for name, raw := range f.PluginConfig {
		if !abi.ValidZone(name) {
			return s, keyErr("plugin_config", fmt.Errorf("%q is not a plugin name (1..64 bytes of [a-z0-9._-])", name))
		}
		s.PluginConfig[name] = []byte(raw)
	}
	if len(f.FailureVerdicts) > 0 {
		s.Engine.FailureVerdicts = map[string]abi.Verdict{}
		keys := make([]string, 0, len(f.FailureVerdicts))
		for z := range f.FailureVerdicts {
			keys = append(keys, z)
		}
		sort.Strings(keys)
		for _, z := range keys {
			v, err := allowDeny(f.FailureVerdicts[z])
			if err != nil {
				return s, keyErr("failure_verdicts."+z, err)
			}
			if z == "*" {
				s.Engine.DefaultFailureVerdict = v
				continue
			}
			if !abi.ValidZone(z) {
				return s, keyErr("failure_verdicts", fmt.Errorf("%q is not a zone name (1..64 bytes of [a-z0-9._-], or *)", z))
			}
			s.Engine.FailureVerdicts[z] = v
		}
	}
	if f.AbstainVerdict != "" {
		if s.Engine.AbstainVerdict, err = allowDeny(f.AbstainVerdict); err != nil {
			return s, keyErr("abstain_verdict", err)
		}
	}
	for key, z := range map[string]string{"unclassified_zone": f.UnclassifiedZone, "failure_zone": f.FailureZone} {
		if z != "" && !abi.ValidZone(z) {
			return s, keyErr(key, fmt.Errorf("%q is not a zone name (1..64 bytes of [a-z0-9._-])", z))
		}
	}
	s.Engine.UnclassifiedZone, s.Engine.FailureZone = f.UnclassifiedZone, f.FailureZone
	if f.CacheEntries < 0 || f.CacheEntries > MaxCacheEntries {
		return s, keyErr("cache_entries", fmt.Errorf("%d is out of range (0 for the default, up to %d)", f.CacheEntries, MaxCacheEntries))
	}
	s.Engine.CacheEntries = f.CacheEntries
	l := &f.Limits
	durs := []struct {
		key string
		in  string
		out *time.Duration
	}{
		{"limits.call_deadline", l.CallDeadline, &s.Limits.CallDeadline},
		{"limits.init_deadline", l.InitDeadline, &s.Limits.InitDeadline},
		{"limits.quarantine_for", l.QuarantineFor, &s.Limits.QuarantineFor},
	}
	for _, d := range durs {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil || v <= 0 {
			return s, keyErr(d.key, fmt.Errorf("%q is not a positive duration such as \"20ms\"", d.in))
		}
		*d.out = v
	}
	ints := []struct {
		key string
		v   int
		max int
	}{
		{"limits.memory_mib", l.MemoryMiB, 4096},
		{"limits.instances", l.Instances, 1024},
		{"limits.quarantine_after", l.QuarantineAfter, 1 << 20},
	}
	for _, n := range ints {
		if n.v < 0 || n.v > n.max {
			return s, keyErr(n.key, fmt.Errorf("%d is out of range (0 for the default, up to %d)", n.v, n.max))
		}
	}
	s.Limits.MemoryBytes = uint64(l.MemoryMiB) << 20
	s.Limits.Instances, s.Limits.QuarantineAfter = l.Instances, l.QuarantineAfter
	if s.Agent, err = f.Agent.settings(dir); err != nil {
		return s, err
	}
	return s, nil
}

func (a *Agent) settings(dir string) (AgentSettings, error) {
	s := AgentSettings{Deadline: 100 * time.Millisecond, NoIgnoreMarks: a.IgnoreMarks != nil && !*a.IgnoreMarks}
	for _, l := range []struct {
		key string
		in  []string
		out *[]string
	}{{"agent.marks", a.Marks, &s.Marks}, {"agent.filesystems", a.Filesystems, &s.Filesystems}} {
		for i, m := range l.in {
			if m == "" {
				return s, keyErr(fmt.Sprintf("%s[%d]", l.key, i), errors.New("empty path"))
			}
			if !filepath.IsAbs(m) {
				m = filepath.Join(dir, m)
			}
			*l.out = append(*l.out, filepath.Clean(m))
		}
	}
	if a.Deadline != "" {
		v, err := time.ParseDuration(a.Deadline)
		if err != nil || v <= 0 || v > 10*time.Second {
			return s, keyErr("agent.deadline", fmt.Errorf("%q is not a duration between 0 and 10s such as \"100ms\"", a.Deadline))
		}
		s.Deadline = v
	}
	for _, v := range []struct {
		key, in string
		out     *bool
	}{
		{"agent.deadline_verdict", a.DeadlineVerdict, &s.DeadlineAllow},
		{"agent.queue_full_verdict", a.QueueFullVerdict, &s.QueueFullAllow},
	} {
		if v.in == "" {
			continue
		}
		verdict, err := allowDeny(v.in)
		if err != nil {
			return s, keyErr(v.key, err)
		}
		*v.out = verdict == abi.Allow
	}
	for _, n := range []struct {
		key string
		v   int
		out *int
		max int
	}{
		{"agent.queue", a.Queue, &s.Queue, 1 << 20},
		{"agent.workers", a.Workers, &s.Workers, 256},
	} {
		if n.v < 0 || n.v > n.max {
			return s, keyErr(n.key, fmt.Errorf("%d is out of range (0 for the default, up to %d)", n.v, n.max))
		}
		*n.out = n.v
	}
	return s, nil
}

func allowDeny(s string) (abi.Verdict, error) {
	switch s {
	case "allow":
		return abi.Allow, nil
	case "deny":
		return abi.Deny, nil
	}
	return 0, fmt.Errorf("%q: want allow or deny", s)
}

func keyErr(key string, err error) error { return fmt.Errorf("key %s: %w", key, err) }

// jsonError turns encoding/json errors into ones that name the key or the
// line and column.
func jsonError(b []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(b, syn.Offset-1) // Offset counts the bad byte
		return fmt.Errorf("line %d, column %d: invalid JSON: %v", line, col, syn)
	case errors.As(err, &typ):
		return fmt.Errorf("key %s: want %s, got JSON %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return errors.New("unexpected end of file")
	}
	return err
}

func position(b []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(b)); i++ {
		if b[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

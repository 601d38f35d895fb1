package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/config"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/plugins/builtin"
)

// engineFlags are shared by every command that builds an engine.
type engineFlags struct {
	plugins  stringList
	config   string
	mode     string
	logLevel string
	noCache  bool
	jsonLog  bool // log JSON lines (host run's audit log)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (f *engineFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.plugins, "plugin", "plugin `FILE.wasm` to load; repeat for several, consulted in order (default: the built-in zones plugin)")
	fs.StringVar(&f.config, "config", "", "host configuration `FILE` (JSON; see README)")
	fs.StringVar(&f.mode, "mode", "", "override the mode: enforce or audit")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level on stderr: trace, debug, info, warn, error or off")
	fs.BoolVar(&f.noCache, "no-compile-cache", false, "do not keep compiled plugins in the user cache directory")
}

// session is an engine with the plugins and runtime it owns.
type session struct {
	rt       *host.Runtime
	engine   *host.Engine
	settings config.Settings
	log      hclog.Logger
}

func (s *session) close(ctx context.Context) {
	s.engine.Close()
	for _, p := range s.engine.Plugins() {
		p.Close(ctx)
	}
	s.rt.Close(ctx)
}

func (f *engineFlags) open(ctx context.Context, stderr io.Writer) (*session, error) {
	var set config.Settings
	var err error
	if f.config != "" {
		if set, err = config.Load(f.config); err != nil {
			return nil, fmt.Errorf("config %w", err)
		}
	} else if set, err = config.Parse(nil, "."); err != nil {
		return nil, err
	}
	if f.mode != "" {
		if set.Engine.Mode, err = host.ParseMode(f.mode); err != nil {
			return nil, fmt.Errorf("--mode: %w", err)
		}
	}
	level := hclog.LevelFromString(f.logLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level: unknown level %q: %w", f.logLevel, errUsage)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "host", Level: level, Output: stderr, JSONFormat: f.jsonLog})
	set.Engine.Logger = log
	opts := host.RuntimeOptions{Limits: set.Limits, Logger: log}
	if !f.noCache && os.Getenv("LINEAGE_NO_COMPILE_CACHE") == "" {
		opts.CacheDir = host.DefaultCacheDir()
	}
	rt, err := host.NewRuntime(ctx, opts)
	if err != nil {
		return nil, err
	}
	type src struct {
		name string
		wasm []byte
	}
	var srcs []src
	paths := set.Plugins
	if len(f.plugins) > 0 {
		paths = f.plugins
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			rt.Close(ctx)
			return nil, fmt.Errorf("plugin: %w", err)
		}
		srcs = append(srcs, src{p, b})
	}
	if len(srcs) == 0 {
		srcs = append(srcs, src{builtin.ZonesSource, builtin.Zones})
	}
	used := map[string]bool{}
	var plugins []*host.Plugin
	fail := func(err error) (*session, error) {
		for _, p := range plugins {
			p.Close(ctx)
		}
		rt.Close(ctx)
		return nil, err
	}
	for _, s := range srcs {
		var cfg []byte
		if m, err := abi.ReadMetadata(s.wasm); err == nil {
			cfg = set.PluginConfig[m.Name]
			used[m.Name] = true
		}
		p, err := rt.Load(ctx, s.name, s.wasm, cfg)
		if err != nil {
			return fail(err)
		}
		plugins = append(plugins, p)
	}
	var unused []string
	for name := range set.PluginConfig {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return fail(fmt.Errorf("config: key plugin_config.%s: no loaded plugin has that name", unused[0]))
	}
	e, err := host.New(set.Engine, plugins...)
	if err != nil {
		return fail(err)
	}
	return &session{rt: rt, engine: e, settings: set, log: log}, nil
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	return nil
}

func newFlagSet(name, synopsis, about string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: host %s %s\n\n%s\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// helpRequested shows usage on --help before any other parsing, so help
// always goes to stdout and exits 0.
func helpRequested(fs *flag.FlagSet, args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.Usage()
			return true
		}
	}
	return false
}

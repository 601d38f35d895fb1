package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

func cmdPlugin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("plugin", "inspect [flags] PLUGIN.wasm",
		`inspect reads a plugin's metadata section without running it, then loads
it as the host would (instrument, compile, static checks, instantiate,
lineage_init with --plugin-config) and reports what it found. Exit status 2
means the host would refuse the plugin, and says why.
`, stdout)
	cfgFile := fs.String("plugin-config", "", "JSON `FILE` to pass to lineage_init (default: empty config)")
	asJSON := fs.Bool("json", false, "print JSON")
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "inspect" {
		return fmt.Errorf("want the subcommand inspect: %w", errUsage)
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one PLUGIN.wasm argument, got %d: %w", fs.NArg(), errUsage)
	}
	path := fs.Arg(0)
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg []byte
	if *cfgFile != "" {
		if cfg, err = os.ReadFile(*cfgFile); err != nil {
			return err
		}
	}
	meta, merr := abi.ReadMetadata(wasm)
	sum := sha256.Sum256(wasm)
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	p, lerr := rt.Load(ctx, path, wasm, cfg)
	if p != nil {
		defer p.Close(ctx)
	}
	type report struct {
		File     string   `json:"file"`
		SHA256   string   `json:"sha256"`
		Size     int      `json:"size"`
		Name     string   `json:"name,omitempty"`
		Version  string   `json:"version,omitempty"`
		Vendor   string   `json:"vendor,omitempty"`
		ABI      string   `json:"abi,omitempty"`
		Entry    []string `json:"entry_points,omitempty"`
		Ops      []string `json:"ops,omitempty"`
		Loadable bool     `json:"loadable"`
		Error    string   `json:"error,omitempty"`
	}
	r := report{File: path, SHA256: fmt.Sprintf("%x", sum), Size: len(wasm), Loadable: lerr == nil}
	if merr == nil {
		r.Name, r.Version, r.Vendor = meta.Name, meta.Version, meta.Vendor
		r.ABI = fmt.Sprintf("%d.%d", meta.Major, meta.Minor)
		if meta.Entry&abi.EntryClassify != 0 {
			r.Entry = append(r.Entry, "classify")
		}
		if meta.Entry&abi.EntryDecide != 0 {
			r.Entry = append(r.Entry, "decide")
		}
		for _, op := range abi.Ops() {
			if meta.Handles(op) {
				r.Ops = append(r.Ops, op.String())
			}
		}
	}
	if lerr != nil {
		r.Error = lerr.Error()
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "file:     %s (%d bytes)\nsha256:   %s\n", r.File, r.Size, r.SHA256)
		if merr != nil {
			fmt.Fprintf(stdout, "metadata: %v\n", merr)
		} else {
			fmt.Fprintf(stdout, "name:     %s %s (%s)\nabi:      %s (host speaks %d.%d)\nentry:    %s\nops:      %s\n",
				r.Name, r.Version, r.Vendor, r.ABI, abi.Major, abi.Minor, strings.Join(r.Entry, ", "), strings.Join(r.Ops, ", "))
		}
		if lerr == nil {
			fmt.Fprintln(stdout, "load:     ok (instrumented, compiled, checked, instantiated, initialized)")
		}
	}
	if lerr != nil {
		return lerr
	}
	return nil
}

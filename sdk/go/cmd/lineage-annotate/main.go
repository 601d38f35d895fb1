// Command lineage-annotate writes a plugin's metadata into its wasm binary as
// the lineage.plugin custom section. The Go linker cannot emit custom
// sections, so this runs after `go build`:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//	go run lineage.dev/lineage/sdk/go/cmd/lineage-annotate \
//	    -name myplugin -version 1.0.0 -vendor "Example Corp" plugin.wasm
//
// The file is rewritten in place unless -o names another. Running it again
// replaces the section, so the step is idempotent.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"lineage.dev/lineage/abi"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lineage-annotate:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("lineage-annotate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lineage-annotate -name NAME -version V [-vendor V] [-entry classify,decide] [-ops all|OP,...] [-o OUT] PLUGIN.wasm\n\n")
		fs.PrintDefaults()
	}
	name := fs.String("name", "", "plugin name, 1..64 bytes of [a-z0-9._-] (required)")
	version := fs.String("version", "", "plugin version, e.g. 1.0.0 (required)")
	vendor := fs.String("vendor", "", "who ships the plugin")
	entry := fs.String("entry", "classify,decide", "entry points the plugin implements: classify, decide or both")
	ops := fs.String("ops", "all", "ops decide handles: all, or a comma-separated list such as file.write,net.connect")
	out := fs.String("o", "", "output file (default: rewrite the input)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want exactly one PLUGIN.wasm argument, got %d", fs.NArg())
	}
	m := abi.Metadata{Major: abi.Major, Minor: abi.Minor, Name: *name, Version: *version, Vendor: *vendor}
	for _, e := range strings.Split(*entry, ",") {
		switch strings.TrimSpace(e) {
		case "classify":
			m.Entry |= abi.EntryClassify
		case "decide":
			m.Entry |= abi.EntryDecide
		default:
			return fmt.Errorf("-entry: unknown entry point %q (want classify or decide)", e)
		}
	}
	if m.Entry&abi.EntryDecide != 0 {
		if *ops == "all" {
			m.Ops = abi.AllOps
		} else {
			for _, s := range strings.Split(*ops, ",") {
				op, err := abi.ParseOp(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("-ops: %w", err)
				}
				m.Ops |= abi.OpsMask(op)
			}
		}
	}
	in := fs.Arg(0)
	wasm, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	annotated, err := abi.AppendMetadata(wasm, m)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	dst := *out
	if dst == "" {
		dst = in
	}
	return os.WriteFile(dst, annotated, 0o644)
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"lineage.dev/lineage/conformance"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/replay"
)

func cmdConformance(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("conformance", "[flags] PLUGIN.wasm",
		`conformance checks that a plugin honours the ABI (abi/SPEC.md) and the
host's semantic contract before you ship it. It runs the plugin in the
host's own runtime, with its limits and instrumentation, and reports every
check by name with its evidence:

`+checkList()+`
Exit status: 0 when every required check passes, 1 when one fails, 2 when
the suite cannot run (bad flags, unreadable file).
`, stdout)
	cfgFile := fs.String("config", "", "the plugin's sample config `FILE`, passed to lineage_init (default: empty config)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	only := fs.String("only", "", "run only these `CHECKS` (comma-separated names or groups, e.g. static,semantics.scopes)")
	skip := fs.String("skip", "", "skip these `CHECKS` (comma-separated names or groups)")
	calls := fs.Int("calls", 10000, "calls on one instance in the determinism check")
	fuzz := fs.Int("fuzz", 2000, "mutated requests per entry point in the robustness check")
	seed := fs.Uint64("seed", 1, "seed for generated lineages and mutations")
	verbose := fs.Bool("v", false, "show the evidence of passing checks too")
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one PLUGIN.wasm argument, got %d: %w", fs.NArg(), errUsage)
	}
	if *calls < 1 || *fuzz < 1 {
		return fmt.Errorf("--calls and --fuzz must be at least 1: %w", errUsage)
	}
	path := fs.Arg(0)
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	o := conformance.Options{Calls: *calls, FuzzCases: *fuzz, Seed: *seed, Only: splitList(*only), Skip: splitList(*skip)}
	if os.Getenv("LINEAGE_NO_COMPILE_CACHE") == "" {
		o.CacheDir = host.DefaultCacheDir()
	}
	if *cfgFile != "" {
		if o.Config, err = os.ReadFile(*cfgFile); err != nil {
			return err
		}
	}
	rep, err := conformance.Run(ctx, path, wasm, o)
	if err != nil {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep, *verbose)
	}
	if !rep.Passed {
		return exitError{1}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func checkList() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, c := range conformance.Checks {
		req := ""
		if !c.Required {
			req = " (informational)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", c.Name, c.Doc, req)
	}
	tw.Flush()
	return b.String()
}

func printReport(w io.Writer, rep *conformance.Report, verbose bool) {
	fmt.Fprintf(w, "conformance: %s\n", replay.Printable(rep.Plugin))
	if m := rep.Metadata; m != nil {
		fmt.Fprintf(w, "plugin: %s %s (%s), ABI %d.%d\n", replay.Printable(m.Name), replay.Printable(m.Version), replay.Printable(m.Vendor), m.Major, m.Minor)
	}
	fmt.Fprintln(w)
	pass, fail, skip := 0, 0, 0
	for _, r := range rep.Results {
		mark := map[conformance.Status]string{conformance.Pass: "PASS", conformance.Fail: "FAIL", conformance.Skip: "SKIP"}[r.Status]
		switch r.Status {
		case conformance.Pass:
			pass++
		case conformance.Fail:
			fail++
		default:
			skip++
		}
		el := ""
		if r.Elapsed > 0 {
			el = fmt.Sprintf(" (%v)", r.Elapsed.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "%s  %-26s %s%s\n", mark, r.Name, replay.Printable(r.Summary), el)
		if r.Status == conformance.Fail || verbose {
			for _, e := range r.Evidence {
				fmt.Fprintf(w, "      %s\n", replay.Printable(e))
			}
		}
	}
	verdict := "PASSED"
	if !rep.Passed {
		verdict = "FAILED"
	} else if len(rep.Deselected) > 0 {
		verdict = fmt.Sprintf("PASSED (partial: %d required checks not selected)", len(rep.Deselected))
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d skipped\n", verdict, pass, fail, skip)
}

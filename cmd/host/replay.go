package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"lineage.dev/lineage/replay"
)

func cmdReplay(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var ef engineFlags
	fs := newFlagSet("replay", "[flags] TRACE.jsonl",
		`Feeds a trace (one JSON event per line, see REPLAY-FORMAT.md; "-" reads
stdin) through the engine the agent uses and prints one decision per exec
and access line, in input order. A bad line stops the replay with an error
naming the line and field; decisions before it are printed.
`, stdout)
	ef.register(fs)
	format := fs.String("format", "json", "output format: json (one object per line) or text (for people)")
	stats := fs.Bool("stats", false, "print cache and plugin counters to stderr at the end")
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one TRACE argument, got %d: %w", fs.NArg(), errUsage)
	}
	write := replay.WriteJSON
	switch *format {
	case "json":
	case "text":
		write = replay.WriteText
	default:
		return fmt.Errorf("--format: unknown format %q (want json or text): %w", *format, errUsage)
	}
	in := stdin
	name := fs.Arg(0)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	s, err := ef.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	out := bufio.NewWriter(stdout)
	r := replay.Runner{Engine: s.engine}
	err = r.Run(ctx, in, func(res *replay.Result) error { return write(out, res) })
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if *stats {
		printStats(stderr, s)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func printStats(w io.Writer, s *session) {
	st := s.engine.Stats()
	c := st.Cache
	fmt.Fprintf(w, "decisions %d, failures %d, processes %d\n", st.Decisions, st.Failures, st.Processes)
	fmt.Fprintf(w, "cache: %d hits, %d misses, %d inserts, %d evictions, %d expired, %d entries\n",
		c.Hits, c.Misses, c.Inserts, c.Evictions, c.Expired, c.Entries)
	for _, p := range st.Plugins {
		fmt.Fprintf(w, "plugin %s %s: %d calls, %d failures", p.Metadata.Name, p.Metadata.Version, p.Calls, p.Failures)
		if p.Quarantined {
			fmt.Fprint(w, ", quarantined")
		}
		if p.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", p.LastError)
		}
		fmt.Fprintln(w)
	}
}

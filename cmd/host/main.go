// Command host is Lineage's endpoint enforcement host: the Linux agent
// (run), the engine driven from traces (replay, decide, explain), plugin
// inspection and the conformance suite. See `host help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `host: Lineage endpoint enforcement host

Usage:
  host replay  [flags] TRACE.jsonl     decide every event of a trace, one JSON line each
  host decide  [flags] EVENT           decide one request (exit 0 allow, 1 deny)
  host explain [flags] [EVENT]         explain one decision: rule, reason, plugin, lineage, cache
  host plugin inspect PLUGIN.wasm      show a plugin's metadata, exports and load check
  host conformance [flags] PLUGIN.wasm check a plugin against the ABI and the host's contract
  host run --config FILE               the Linux agent: enforce on the mounts the config names (root)
  host help [COMMAND]                  show help

Without --plugin (or "plugins" in --config) every command uses the reference
zones plugin built into this binary. Run 'host COMMAND --help' for flags.

Exit status: 0 success (decide: allowed), 1 denied (decide only), 2 bad input
or failure.
`

// errUsage marks errors after which the command's flags should be shown.
var errUsage = errors.New("usage")

// exitError carries a specific exit status.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) error{
		"replay":  cmdReplay,
		"decide":  cmdDecide,
		"explain": cmdExplain,
		"plugin":  cmdPlugin,

		"conformance": cmdConformance,
		"run":         cmdRun,
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := cmds[args[1]]; ok {
				c(ctx, []string{"--help"}, stdin, stdout, stderr)
				return 0
			}
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	c, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "host: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := c(ctx, args[1:], stdin, stdout, stderr)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "host %s: %v\nRun 'host %s --help' for usage.\n", name, strings.TrimSuffix(err.Error(), ": usage"), name)
		return 2
	}
	fmt.Fprintf(stderr, "host %s: %v\n", name, err)
	return 2
}

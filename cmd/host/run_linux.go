//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"lineage.dev/lineage/agent"
	"lineage.dev/lineage/kernel/linux/probe"
)

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "--config FILE [flags]",
		`run starts the Linux agent (root): it tracks processes with eBPF, rebuilds
the process table from /proc, and answers fanotify permission events on the
mounts listed in the config's agent.marks through the engine, until SIGINT
or SIGTERM. It prints which kernel features are available first. Denials
are logged as JSON lines on stderr (every decision at --log-level debug).
Stopping the agent, or killing it, releases every pending event.
`, stdout)
	var ef engineFlags
	ef.register(fs)
	if helpRequested(fs, args) {
		return flag.ErrHelp
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if ef.config == "" {
		return fmt.Errorf("--config is required: it names what to guard (agent.marks, agent.filesystems): %w", errUsage)
	}
	if !flagSet(fs, "log-level") {
		ef.logLevel = "info" // denials are logged at info
	}
	ef.jsonLog = true
	s, err := ef.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	fmt.Fprintf(stdout, "kernel features:\n%s", probe.Summary())
	as := s.settings.Agent
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.Start(ctx, s.engine, agent.Config{
		Marks: as.Marks, Filesystems: as.Filesystems, Deadline: as.Deadline, DeadlineAllow: as.DeadlineAllow, QueueFullAllow: as.QueueFullAllow,
		Queue: as.Queue, Workers: as.Workers, NoIgnoreMarks: as.NoIgnoreMarks, Log: s.log.Named("agent"),
	})
	if err != nil {
		return err
	}
	defer a.Close()
	st := a.Stats()
	fmt.Fprintf(stdout, "guarding mounts %v, filesystems %v (mode %s, deadline %v); %d processes found running, %d of unknown ancestry\n",
		as.Marks, as.Filesystems, s.engine.Mode(), as.Deadline, st.Rebuilt, st.RebuiltUnknown)
	err = a.Run(ctx)
	fmt.Fprintf(stdout, "stopped: %+v; fanotify %+v\n", a.Stats(), a.Fanotify())
	return err
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Package probe finds out which kernel features the Linux agent can use
// here, without changing anything: each probe answers available, not
// supported (with why) or inconclusive (it could not tell, with why), and
// results are cached for the life of the process. `host run` prints them,
// so an administrator sees what is active and what is not, and why.
package probe

import (
	"fmt"
	"strings"
	"sync"
)

// State is a probe's answer.
type State int

const (
	Available State = iota
	NotSupported
	Inconclusive
)

func (s State) String() string {
	switch s {
	case Available:
		return "available"
	case NotSupported:
		return "not supported"
	}
	return "inconclusive"
}

// Result is one feature's probe.
type Result struct {
	Feature string
	State   State
	Detail  string // what was found, or why not
}

func (r Result) String() string { return fmt.Sprintf("%s: %s (%s)", r.Feature, r.State, r.Detail) }

// Feature names.
const (
	FanotifyPerm    = "fanotify permission events" // FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM
	ProcessTracking = "eBPF process tracking"      // raw tracepoints, ring buffer, BTF (kernel/linux/proctrack)
	CgroupV2        = "cgroup v2"                  // for eBPF cgroup programs (network)
	Landlock        = "Landlock"                   // sandboxed launch
	SeccompNotif    = "seccomp user notification"  // sandboxed launch
)

var (
	once    sync.Once
	results []Result
)

// All runs every probe once and returns the cached results.
func All() []Result {
	once.Do(func() { results = probeAll() })
	return results
}

// Get returns the cached result for feature.
func Get(feature string) Result {
	for _, r := range All() {
		if r.Feature == feature {
			return r
		}
	}
	return Result{feature, Inconclusive, "no such probe"}
}

// Summary is a readable block of the results, one per line.
func Summary() string {
	var b strings.Builder
	for _, r := range All() {
		fmt.Fprintf(&b, "%-28s %-13s %s\n", r.Feature, r.State, r.Detail)
	}
	return b.String()
}

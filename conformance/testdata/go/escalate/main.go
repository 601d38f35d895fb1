//go:build wasip1

// Command escalate breaks monotonic inheritance on purpose, for the
// conformance suite's tests: a process started by a "low" process is
// classified "high", and "high" may do what "low" may not.
package main

import (
	"strings"

	"lineage.dev/lineage/sdk/go/lineage"
)

type plugin struct{}

func (plugin) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	zone := "high"
	if r.CreatorZone == "low" || r.CreatorUnknown() && strings.HasPrefix(r.Exe, "/tmp/") {
		zone = "high"
		if r.CreatorUnknown() {
			zone = "low"
		}
	}
	return lineage.ClassifyResponse{Classified: true, Zone: zone, Rule: "escalate"}, nil
}

func (plugin) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	v := lineage.Allow
	if r.Zone == "low" && r.Op != lineage.OpProcessExec {
		v = lineage.Deny
	}
	return lineage.DecideResponse{Verdict: v, Scope: lineage.Scope{TTLMillis: 1000}, Rule: "escalate", Reason: "on purpose"}, nil
}

func init() { lineage.Register(plugin{}) }

func main() {}

//go:build wasip1

// Command widescope claims scopes wider than the truth on purpose, for the
// conformance suite's tests: it allows objects containing "a" and denies
// the rest, yet says each answer holds for every object of the op.
package main

import (
	"strings"

	"lineage.dev/lineage/sdk/go/lineage"
)

type plugin struct{}

func (plugin) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return lineage.ClassifyResponse{}, nil
}

func (plugin) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	v := lineage.Deny
	if strings.Contains(r.Object, "a") {
		v = lineage.Allow
	}
	return lineage.DecideResponse{Verdict: v, Scope: lineage.Scope{Object: lineage.ObjectAny, TTLMillis: 1000}, Rule: "widescope", Reason: "on purpose"}, nil
}

func init() { lineage.Register(plugin{}) }

func main() {}

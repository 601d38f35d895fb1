//go:build wasip1

// Command addrscope claims a port range "for any address" on purpose, for
// the conformance suite's tests, while its verdict depends on the address:
// it allows connections to addresses ending in .7 only.
package main

import (
	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/sdk/go/lineage"
)

type plugin struct{}

func (plugin) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return lineage.ClassifyResponse{}, nil
}

func (plugin) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	if r.Op.Object() != abi.ObjectEndpoint {
		return lineage.DecideResponse{Verdict: lineage.Allow, Scope: lineage.Scope{TTLMillis: 1000}, Rule: "other"}, nil
	}
	v := lineage.Deny
	if r.Addr[15] == 7 {
		v = lineage.Allow
	}
	return lineage.DecideResponse{
		Verdict: v,
		Scope:   lineage.Scope{Subject: lineage.SubjectAll, Object: lineage.ObjectPortRange, PortLo: r.Port, PortHi: r.Port, TTLMillis: 1000},
		Rule:    "addrscope", Reason: "on purpose",
	}, nil
}

func init() { lineage.Register(plugin{}) }

func main() {}

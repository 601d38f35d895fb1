//go:build wasip1

// Command openall is a test plugin for the kernel-side cache: it allows
// every request and says so for every subject and every object of the op,
// for ttl_ms milliseconds (config {"ttl_ms": N}, default 60000). Such
// answers are what the agent may turn into fanotify ignore marks.
package main

import (
	"encoding/json"

	"lineage.dev/lineage/sdk/go/lineage"
)

type plugin struct{ ttl uint32 }

func (p *plugin) Init(config []byte) error {
	c := struct {
		TTL uint32 `json:"ttl_ms"`
	}{TTL: 60000}
	if len(config) > 0 {
		if err := json.Unmarshal(config, &c); err != nil {
			return err
		}
	}
	p.ttl = c.TTL
	return nil
}

func (p *plugin) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return lineage.ClassifyResponse{}, nil
}

func (p *plugin) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	return lineage.DecideResponse{
		Verdict: lineage.Allow,
		Scope:   lineage.Scope{Subject: lineage.SubjectAll, Object: lineage.ObjectAny, TTLMillis: p.ttl},
		Rule:    "openall", Reason: "allowed for everyone",
	}, nil
}

func init() { lineage.Register(&plugin{}) }

func main() {}

//go:build wasip1

// Command zones is Lineage's reference zone policy as a WebAssembly plugin.
// The policy itself lives in the policy package, which runs natively too;
// this file only connects it to the SDK's exports. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-buildid= -o zones.wasm ./plugins/zones
//
// and annotate it with sdk/go/cmd/lineage-annotate.
package main

import (
	"lineage.dev/lineage/plugins/zones/policy"
	"lineage.dev/lineage/sdk/go/lineage"
)

// plugin adapts a *policy.Policy to the SDK's interfaces. The SDK calls
// Init once per instance before anything else, so p is set whenever
// Classify or Decide run.
type plugin struct {
	p *policy.Policy
}

func (pl *plugin) Init(config []byte) error {
	c, err := policy.ParseConfig(config)
	if err != nil {
		return err
	}
	p, err := policy.New(c)
	if err != nil {
		return err
	}
	pl.p = p
	return nil
}

func (pl *plugin) Classify(req *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return pl.p.Classify(req), nil
}

func (pl *plugin) Decide(req *lineage.DecideRequest) (lineage.DecideResponse, error) {
	return pl.p.Decide(req), nil
}

// Compile-time checks that the SDK will find every entry point.
var (
	_ lineage.Initializer = (*plugin)(nil)
	_ lineage.Classifier  = (*plugin)(nil)
	_ lineage.Decider     = (*plugin)(nil)
)

// init registers the plugin: in a WASI reactor main never runs.
func init() { lineage.Register(&plugin{}) }

func main() {}

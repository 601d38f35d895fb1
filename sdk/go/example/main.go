//go:build wasip1

// Command example is a minimal Lineage plugin: it denies file writes and
// deletes under configured folders to every zone except "system", and
// abstains on everything else, leaving those decisions to other plugins.
//
// Build and annotate it (from the repository root):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o build/plugins/example.wasm ./sdk/go/example
//	go run ./sdk/go/cmd/lineage-annotate -name example -version 1.0.0 -vendor "Lineage examples" \
//	    -entry decide -ops file.write,file.delete build/plugins/example.wasm
//
// Config (JSON): {"protected": ["/srv/critical/", "/etc/"]}
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"lineage.dev/lineage/sdk/go/lineage"
)

type protect struct {
	folders []string
}

func (p *protect) Init(config []byte) error {
	var c struct {
		Protected []string `json:"protected"`
	}
	if len(config) > 0 {
		d := json.NewDecoder(strings.NewReader(string(config)))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return fmt.Errorf("config: %v", err)
		}
	}
	for i, f := range c.Protected {
		if !strings.HasSuffix(f, "/") {
			return fmt.Errorf("config: protected[%d]: %q must end with / so that it names a folder", i, f)
		}
	}
	if len(c.Protected) == 0 {
		return errors.New("config: protected: list at least one folder")
	}
	p.folders = c.Protected
	return nil
}

const hour = 3600 * 1000

func (p *protect) Decide(req *lineage.DecideRequest) (lineage.DecideResponse, error) {
	// The answer depends only on the zone and the folder, so it holds for
	// every path under the folder (a prefix scope) and every subject in
	// the zone: the host caches it that widely.
	for _, f := range p.folders {
		if strings.HasPrefix(req.Object, f) {
			if req.Zone == "system" {
				break
			}
			return lineage.DecideResponse{
				Verdict: lineage.Deny,
				Scope:   lineage.Scope{Subject: lineage.SubjectZone, Object: lineage.ObjectPrefix, PrefixLen: uint32(len(f)), TTLMillis: hour},
				Rule:    "example.protected",
				Reason:  "only system processes may change " + f,
			}, nil
		}
	}
	return lineage.DecideResponse{Verdict: lineage.Abstain, Scope: lineage.Scope{TTLMillis: hour}}, nil
}

func init() { lineage.Register(&protect{}) }

func main() {}

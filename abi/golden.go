package abi

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

//go:embed testdata/vectors.json
var vectorsJSON []byte

// Golden is one golden vector's message: Valid says every decoder must
// accept it (else every decoder must reject it).
type Golden struct {
	Name  string
	Type  string // decide_request, classify_request, decide_response, classify_response, metadata
	Op    Op     // decide_response: the op of the request answered
	Valid bool
	Bytes []byte
}

// GoldenVectors returns the golden vectors of testdata/vectors.json (see
// SPEC.md), which are compiled into the package so that tools such as the
// conformance suite can send them to plugins.
func GoldenVectors() ([]Golden, error) {
	var f struct {
		Vectors []struct {
			Name, Type, Hex string
			Op              uint16
		}
		Invalid []struct {
			Name, Type, Hex string
			Op              uint16
		}
	}
	if err := json.Unmarshal(vectorsJSON, &f); err != nil {
		return nil, fmt.Errorf("abi: golden vectors: %w", err)
	}
	var out []Golden
	add := func(name, typ, h string, op uint16, valid bool) error {
		b, err := hex.DecodeString(h)
		if err != nil {
			return fmt.Errorf("abi: golden vector %q: %w", name, err)
		}
		out = append(out, Golden{Name: name, Type: typ, Op: Op(op), Valid: valid, Bytes: b})
		return nil
	}
	for _, v := range f.Vectors {
		if err := add(v.Name, v.Type, v.Hex, v.Op, true); err != nil {
			return nil, err
		}
	}
	for _, v := range f.Invalid {
		if err := add(v.Name, v.Type, v.Hex, v.Op, false); err != nil {
			return nil, err
		}
	}
	return out, nil
}

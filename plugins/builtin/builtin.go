// Package builtin holds the reference plugins compiled into the host binary,
// so the host runs with the product's default policy and no files. The
// .wasm files here are build outputs of plugins/ committed on purpose:
// `make embed` refreshes them and a test fails if one differs from a fresh
// build of its source. It imports nothing.
package builtin

import _ "embed"

// Zones is plugins/zones built by `make plugins` (build/plugins/zones.wasm).
//
//go:embed zones.wasm
var Zones []byte

// ZonesSource names the embedded zones plugin in errors and logs.
const ZonesSource = "builtin:zones"

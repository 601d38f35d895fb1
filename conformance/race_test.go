//go:build race

package conformance

import "time"

// The race detector slows the host's side of every call several times
// over, and on a 2-core machine a call now and then overruns the default
// 20ms deadline though the guest did nothing wrong; the reference plugins'
// pass is checked with a longer one then (without -race, with the default).
const referenceDeadline = time.Second

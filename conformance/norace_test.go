//go:build !race

package conformance

import "time"

// referenceDeadline is the call deadline the reference plugins are checked
// with: zero, the host's default.
const referenceDeadline time.Duration = 0

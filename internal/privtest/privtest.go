// Package privtest holds the rule for tests that need root: they skip with
// the reason when not root, and fail instead when
// LINEAGE_REQUIRE_PRIVILEGED=1 (CI and make e2e set it), so a privileged
// test never passes by skipping there.
package privtest

import (
	"os"
	"testing"
)

// Require skips or fails t unless the test runs as root.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("LINEAGE_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("needs root, and LINEAGE_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("needs root (set LINEAGE_REQUIRE_PRIVILEGED=1 to make this a failure)")
}

//go:build linux

package probe

import (
	"strings"
	"testing"

	"lineage.dev/lineage/internal/privtest"
)

func privileged(t *testing.T) { privtest.Require(t) }

// What the project's machines have (see the developers' brief): fanotify
// permission events, Landlock and seccomp user notification, as root.
func TestProbesAsRoot(t *testing.T) {
	privileged(t)
	for _, f := range []string{FanotifyPerm, ProcessTracking, Landlock, SeccompNotif} {
		if r := Get(f); r.State != Available {
			t.Errorf("%v: want available on this machine", r)
		}
	}
	t.Logf("\n%s", Summary())
}

func TestSummaryNamesEveryFeature(t *testing.T) {
	s := Summary()
	for _, f := range []string{FanotifyPerm, ProcessTracking, CgroupV2, Landlock, SeccompNotif} {
		if !strings.Contains(s, f) {
			t.Errorf("summary lacks %q:\n%s", f, s)
		}
	}
	if r := Get("nonsense"); r.State != Inconclusive {
		t.Errorf("unknown feature: %v", r)
	}
}

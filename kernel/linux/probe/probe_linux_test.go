//go:build linux

package probe

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/kernel/linux/internal/privtest"
)

func privileged(t *testing.T) { privtest.Require(t) }

// What the project's machines have (see the developers' brief): fanotify
// permission events, Landlock and seccomp user notification, as root.
func TestProbesAsRoot(t *testing.T) {
	privileged(t)
	for _, f := range []string{FanotifyPerm, Landlock, SeccompNotif} {
		if r := Get(f); r.State != Available {
			t.Errorf("%v: want available on this machine", r)
		}
	}
	t.Logf("\n%s", Summary())
}

// The tracepoint probe finds tracefs where it is mounted: on a mount made
// for the test, inconclusive before it, available after.
func TestTracepointsOnTestMount(t *testing.T) {
	privileged(t)
	dir := t.TempDir()
	saved := tracefsDirs
	t.Cleanup(func() { tracefsDirs = saved })
	tracefsDirs = []string{dir}
	if r := tracepoints(); r.State == Available {
		t.Fatalf("before mounting: %v", r)
	}
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		t.Fatalf("mounting tracefs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if r := tracepoints(); r.State != Available || !strings.Contains(r.Detail, dir) {
		t.Fatalf("after mounting: %v", r)
	}
}

func TestSummaryNamesEveryFeature(t *testing.T) {
	s := Summary()
	for _, f := range []string{FanotifyPerm, Tracepoints, CgroupV2, Landlock, SeccompNotif} {
		if !strings.Contains(s, f) {
			t.Errorf("summary lacks %q:\n%s", f, s)
		}
	}
	if r := Get("nonsense"); r.State != Inconclusive {
		t.Errorf("unknown feature: %v", r)
	}
}

//go:build !linux

package probe

func probeAll() []Result {
	var out []Result
	for _, f := range []string{FanotifyPerm, ProcessTracking, CgroupV2, Landlock, SeccompNotif} {
		out = append(out, Result{f, NotSupported, "not Linux"})
	}
	return out
}

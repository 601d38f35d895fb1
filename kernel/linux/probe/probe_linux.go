//go:build linux

package probe

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

func probeAll() []Result {
	return []Result{fanotifyPerm(), processTracking(), cgroupV2(), landlock(), seccompNotif()}
}

// fanotifyPerm opens a permission-class fanotify group and checks that the
// kernel knows FAN_OPEN_EXEC_PERM, by placing an ignore mark with it on a
// directory of its own: ignore marks never produce events, so nothing can
// block on the probe.
func fanotifyPerm() Result {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE)
	switch {
	case errors.Is(err, unix.EPERM):
		return Result{FanotifyPerm, NotSupported, "fanotify_init: needs CAP_SYS_ADMIN (run as root)"}
	case errors.Is(err, unix.ENOSYS):
		return Result{FanotifyPerm, NotSupported, "the kernel has no fanotify"}
	case errors.Is(err, unix.EINVAL):
		return Result{FanotifyPerm, NotSupported, "the kernel has no permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"}
	case err != nil:
		return Result{FanotifyPerm, Inconclusive, "fanotify_init: " + err.Error()}
	}
	defer unix.Close(fd)
	dir, err := os.MkdirTemp("", "lineage-probe-")
	if err != nil {
		return Result{FanotifyPerm, Inconclusive, "a directory to mark: " + err.Error()}
	}
	defer os.Remove(dir)
	mask := uint64(unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM)
	err = unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_IGNORED_SURV_MODIFY, mask, unix.AT_FDCWD, dir)
	switch {
	case errors.Is(err, unix.EINVAL):
		return Result{FanotifyPerm, NotSupported, "the kernel has no FAN_OPEN_EXEC_PERM (Linux 5.0 or later needed)"}
	case err != nil:
		return Result{FanotifyPerm, Inconclusive, "fanotify_mark: " + err.Error()}
	}
	return Result{FanotifyPerm, Available, "FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM"}
}

// processTracking checks what kernel/linux/proctrack needs: raw
// tracepoint programs, BPF ring buffers, the bpf_loop helper (the exec
// path walk) and the kernel's BTF (for CO-RE).
func processTracking() Result {
	if err := rlimit.RemoveMemlock(); err != nil {
		return Result{ProcessTracking, Inconclusive, "lifting the memlock limit: " + err.Error()}
	}
	var missing []string
	for _, c := range []struct {
		what string
		err  error
	}{
		{"raw tracepoint programs", features.HaveProgramType(ebpf.RawTracepoint)},
		{"BPF ring buffers (Linux 5.8)", features.HaveMapType(ebpf.RingBuf)},
		{"the bpf_loop helper (Linux 5.17)", features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnLoop)},
	} {
		switch {
		case c.err == nil:
		case errors.Is(c.err, ebpf.ErrNotSupported):
			missing = append(missing, c.what)
		case errors.Is(c.err, unix.EPERM):
			return Result{ProcessTracking, NotSupported, "loading eBPF programs needs root (CAP_BPF and CAP_PERFMON)"}
		default:
			return Result{ProcessTracking, Inconclusive, c.what + ": " + c.err.Error()}
		}
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		missing = append(missing, "kernel BTF (/sys/kernel/btf/vmlinux): "+err.Error())
	}
	if len(missing) > 0 {
		return Result{ProcessTracking, NotSupported, "the kernel lacks " + strings.Join(missing, ", ")}
	}
	return Result{ProcessTracking, Available, "raw tracepoints sched_process_fork/exec/exit, ring buffer, bpf_loop, BTF"}
}

// cgroupDirs are where a cgroup v2 hierarchy is usually mounted, the
// hybrid layout's first.
var cgroupDirs = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}

func cgroupV2() Result {
	for _, d := range cgroupDirs {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return Result{CgroupV2, Available, "mounted at " + d}
		}
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return Result{CgroupV2, Inconclusive, "/proc/filesystems: " + err.Error()}
	}
	if !strings.Contains(string(b), "\tcgroup2\n") {
		return Result{CgroupV2, NotSupported, "the kernel has no cgroup2 filesystem"}
	}
	return Result{CgroupV2, Inconclusive, "cgroup2 is not mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup (the agent mounts it when it needs it)"}
}

func landlock() Result {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch errno {
	case 0:
		return Result{Landlock, Available, fmt.Sprintf("ABI version %d", v)}
	case unix.ENOSYS:
		return Result{Landlock, NotSupported, "the kernel has no Landlock (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK)"}
	case unix.EOPNOTSUPP:
		return Result{Landlock, NotSupported, "Landlock is built in but disabled (add landlock to the lsm= boot parameter)"}
	}
	return Result{Landlock, Inconclusive, "landlock_create_ruleset: " + errno.Error()}
}

// seccompNotif asks the kernel whether it knows the user-notification
// return action, without installing a filter.
func seccompNotif() Result {
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	switch errno {
	case 0:
		return Result{SeccompNotif, Available, "SECCOMP_RET_USER_NOTIF"}
	case unix.EOPNOTSUPP:
		return Result{SeccompNotif, NotSupported, "the kernel does not know SECCOMP_RET_USER_NOTIF (Linux 5.0 or later)"}
	case unix.ENOSYS, unix.EINVAL:
		return Result{SeccompNotif, NotSupported, "the kernel has no seccomp(2) action query"}
	}
	return Result{SeccompNotif, Inconclusive, "seccomp(SECCOMP_GET_ACTION_AVAIL): " + errno.Error()}
}

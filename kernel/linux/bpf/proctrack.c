// proctrack: process creation, image replacement and exit, as the kernel
// sees them, for Lineage's process table (kernel/linux/proctrack loads it).
//
// Raw tracepoints hand the programs the task structures themselves, so
// identity is exact: the creator is the task that called fork/clone (not
// the parent a child may later be re-parented to, and not CLONE_PARENT's
// real_parent), and every process is named by its thread group id and its
// start_boottime, which /proc shows (in clock ticks) as field 22 of stat.
// Field offsets come from the running kernel's BTF (CO-RE), so the object
// needs no kernel headers and runs on any kernel with BTF.
//
// Build: go generate ./kernel/linux/proctrack (needs clang; the generated
// object and Go bindings are committed, so go build does not).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Only the fields used here; CO-RE relocates them against the kernel's own
// layout.
struct signal_struct {
	struct {
		int counter;
	} live;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	unsigned long long start_boottime;
	struct task_struct *group_leader;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

// For the executable's path: the file execve loaded, its dentry chain up
// to its mount's root, and the mounts above it.
struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct super_block {
	unsigned long s_magic;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
} __attribute__((preserve_access_index));

enum kind {
	KIND_FORK = 1,
	KIND_EXEC = 2,
	KIND_EXIT = 3,
};

struct event {
	__u32 kind;
	__u32 pid;           // the process (thread group id)
	__u64 start;         // its start_boottime, ns
	__u32 creator;       // fork: the creating process
	__u32 pad;
	__u64 creator_start; // fork: the creator's start_boottime, ns
};

// An exec event also carries the image: the path of the file execve
// loaded (for a script, its interpreter, as /proc/PID/exe shows), walked
// from the file itself when the exec happens, so that a process that
// execs twice before user space reads the first event still has each
// image right. names holds the path's components leaf first, each ended
// by a NUL, names_len bytes of them; flags bit 0 says the walk stopped
// before the root (too deep, or a name could not be read), and user space
// then reads /proc instead. magic is the filesystem's statfs magic.
#define NAMES 4096
#define NAME_MAX_READ 256
#define MAX_DEPTH 64

struct exec_event {
	struct event h;
	__u64 magic;
	__u32 names_len;
	__u32 flags;
	char names[NAMES + NAME_MAX_READ];
};

// Unused except to make bpf2go emit the Go types.
const struct event *unused_event __attribute__((unused));
const struct exec_event *unused_exec_event __attribute__((unused));

// The ring's default size; user space may set another when it loads the
// programs (a power of two, a multiple of the page size).
#define RING_SIZE (1 << 22)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_SIZE);
} events SEC(".maps");

// scratch is where on_exec builds its record.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} scratch SEC(".maps");

// seq[0] counts events submitted to the ring buffer, seq[1] events the
// ring buffer had no room for. User space compares seq[0] with the events
// it has applied: equal means every process event that happened so far is
// in its table, unless seq[1] grew since it last made up for losses.
// Memory-mapped, so reading it is no system call.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seq SEC(".maps");

// SEQ_SUBMITTED and SEQ_LOST index seq.
#define SEQ_SUBMITTED 0
#define SEQ_LOST 1

static __always_inline void seq_add(__u32 i, __s64 d)
{
	__u64 *n = bpf_map_lookup_elem(&seq, &i);
	if (n)
		__sync_fetch_and_add(n, d);
}

// lost counts an event the ring had no room for.
static __always_inline void lost(void)
{
	seq_add(SEQ_LOST, 1);
}

static __always_inline void fill(struct event *e, __u32 kind, __u32 pid, __u64 start, __u32 creator, __u64 creator_start)
{
	e->kind = kind;
	e->pid = pid;
	e->start = start;
	e->creator = creator;
	e->pad = 0;
	e->creator_start = creator_start;
}

// count counts an event before it becomes visible, so user space may wait
// for an event it cannot read yet, never read one it has not counted.
static __always_inline void count(void)
{
	seq_add(SEQ_SUBMITTED, 1);
}

// uncount takes back a count() whose event never became readable.
static __always_inline void uncount(void)
{
	seq_add(SEQ_SUBMITTED, -1);
}

// wake_flags: no wake-up per event. User space drains the ring on its own
// clock and whenever a decision needs the table current (it compares
// seq[0] with what it applied), so a process storm costs no wake-up per
// fork, exec and exit. A ring filling up wakes the reader at once.
static __always_inline __u64 wake_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(void *e)
{
	count();
	bpf_ringbuf_submit(e, wake_flags());
}

static __always_inline void emit(__u32 kind, __u32 pid, __u64 start, __u32 creator, __u64 creator_start)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lost();
		return;
	}
	fill(e, kind, pid, start, creator, creator_start);
	submit(e);
}

// walk is the state of the path walk, one step per bpf_loop iteration (a
// plain loop's branches make the verifier's work explode).
struct walk {
	struct exec_event *e;
	struct dentry *d;
	struct mount *m;
	__u32 off;
	__u32 done;
};

static long walk_step(__u64 i, void *arg)
{
	struct walk *w = arg;
	// Copies: BPF_CORE_READ would make w's own fields CO-RE relocations,
	// which no kernel type can resolve.
	struct dentry *d = w->d;
	struct mount *m = w->m;
	struct dentry *root = BPF_CORE_READ(m, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (!root || !parent)
		return 1; // a read failed: no path (done stays 0)
	if (d == root) {
		struct mount *up = BPF_CORE_READ(m, mnt_parent);
		if (!up)
			return 1;
		if (up == m) {
			w->done = 1; // the root of the mount tree
			return 1;
		}
		// The root of a mount: go on from where it is mounted.
		w->d = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = up;
		return 0;
	}
	if (d == parent)
		return 1; // a filesystem's root that is not its mount's: no path from here
	__u32 off = w->off;
	if (off >= NAMES)
		return 1; // too long
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(&w->e->names[off & (NAMES - 1)], NAME_MAX_READ, name);
	if (n <= 0)
		return 1;
	w->off = off + n;
	w->d = parent;
	return 0;
}

// sched_process_fork(struct task_struct *parent, struct task_struct *child):
// parent is the task that called fork/clone.
SEC("raw_tracepoint/sched_process_fork")
int on_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	int pid = BPF_CORE_READ(child, pid);
	int tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0; // a new thread, not a new process
	__u32 creator = BPF_CORE_READ(parent, tgid);
	__u64 creator_start = BPF_CORE_READ(parent, group_leader, start_boottime);
	emit(KIND_FORK, tgid, BPF_CORE_READ(child, start_boottime), creator, creator_start);
	return 0;
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm):
// by now p leads its thread group and carries the group's start time.
SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	// Built in a per-CPU scratch record and copied into the ring at its
	// real length (48 bytes and the path), so the ring holds tens of
	// thousands of execs rather than the ~950 full-size records would.
	__u32 zero = 0;
	struct exec_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e) {
		lost();
		return 0;
	}
	fill(&e->h, KIND_EXEC, BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, start_boottime), 0, 0);
	e->names_len = 0;
	e->flags = 1;

	struct file *f = BPF_CORE_READ(bprm, file);
	struct vfsmount *vfs = BPF_CORE_READ(f, f_path.mnt);
	e->magic = BPF_CORE_READ(vfs, mnt_sb, s_magic);
	struct walk w = {
		.e = e,
		.d = BPF_CORE_READ(f, f_path.dentry),
		.m = (struct mount *)((void *)vfs - bpf_core_field_offset(struct mount, mnt)),
	};
	if (f && vfs && w.d)
		bpf_loop(MAX_DEPTH, walk_step, &w, 0);
	// A path of no components (the file is its mount tree's root, which
	// no executable is) is no path either.
	if (w.done && w.off > 0 && w.off < NAMES) {
		e->names_len = w.off;
		e->flags = 0;
	}
	__u64 size = sizeof(*e) - sizeof(e->names) + (e->names_len & (NAMES - 1));
	// Counted before it can become readable, as submit does; a record
	// the ring has no room for is taken back, and counted lost.
	count();
	if (bpf_ringbuf_output(&events, e, size, wake_flags()) != 0) {
		uncount();
		lost();
	}
	return 0;
}

// sched_process_exit(struct task_struct *p, ...): reported when the last
// thread of the process exits, whichever thread that is (do_exit counts
// signal->live down before the tracepoint), so the process is gone.
SEC("raw_tracepoint/sched_process_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx->args[0];
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	emit(KIND_EXIT, BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, group_leader, start_boottime), 0, 0);
	return 0;
}

//go:build linux

// Command kernel is `make bench-kernel`: it measures what a permission
// hook costs real workloads, on a tmpfs made for the run (root):
//
//   - exec storm: 500 fork+exec of a program in system space;
//   - open storm: 20,000 open+close of a file in system space;
//
// under four conditions in one run: no listener; a minimal fanotify
// listener that allows everything (the floor of any user-space permission
// hook); fapolicyd in permissive mode, when installed; and Lineage (the
// agent with the reference plugin). It prints the times and the ratios to
// the floor. The workloads run in a child process, as another program
// would: a listener answers its own process's events without a decision.
//
// Where the scheduler puts the workload and the listener decides much of
// a permission event's cost on a virtual machine (a wake-up across CPUs
// costs far more than one on the same CPU), and it decides differently
// from run to run. -pin fixes the placement, to measure one case at a
// time; rounds interleave the conditions, so that the ratios within a
// round compare like with like.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lineage.dev/lineage/agent"
	"lineage.dev/lineage/host"
	"lineage.dev/lineage/plugins/builtin"
)

var cpuProfile, openallPath, pin string

const (
	execs = 500
	opens = 20000
)

func main() {
	// Child modes: the workloads themselves.
	if len(os.Args) == 3 && os.Args[1] == "-execs" {
		execStorm(os.Args[2])
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "-opens" {
		openStorm(os.Args[2])
		return
	}
	rounds := flag.Int("rounds", 5, "measure each condition this many times (interleaved)")
	orphan := flag.Bool("orphan", false, "internal: run as an orphan (see orphaned)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of Lineage's first round to `FILE`")
	flag.StringVar(&pin, "pin", "", "pin to CPUs (`MODE`): same runs the workloads and the listeners on CPU 0; split runs the workloads on CPU 0 and the listeners on CPU 1 (default: the scheduler places them)")
	flag.StringVar(&openallPath, "openall", "", "also measure Lineage with this plugin (agent/testdata/openall, annotated): answers for every subject, which become ignore marks")
	flag.Parse()
	if pin != "" && pin != "same" && pin != "split" {
		fmt.Fprintf(os.Stderr, "bench-kernel: -pin %q: want same or split\n", pin)
		os.Exit(2)
	}
	if !*orphan {
		os.Exit(orphaned(*rounds))
	}
	status := os.NewFile(3, "status")
	if err := run(*rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-kernel:", err)
		fmt.Fprintln(status, "fail")
		os.Exit(1)
	}
	fmt.Fprintln(status, "ok")
}

// orphaned runs the benchmark in a double-forked copy of this program and
// waits for it. The workloads must run as a system process, as a build or
// a service would; whatever started the benchmark (a shell in a test
// harness, say) may be untrusted, and zones are inherited. An orphan has
// no known creator, so the agent classifies it by its executable, in
// system space by the benchmark's config.
func orphaned(rounds int) int {
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-kernel:", err)
		return 1
	}
	self, _ := os.Executable()
	openall := openallPath
	if openall != "" {
		openall, _ = filepath.Abs(openall)
	}
	// With -pin the orphan, and so every listener it starts (fapolicyd
	// included), runs on the listeners' CPU.
	listenerCPU := map[string]string{"": "", "same": "0", "split": "1"}[pin]
	cmd := exec.Command("sh", "-c", `(${5:+taskset -c "$5"} "$0" -orphan -rounds "$1" -cpuprofile "$2" -openall "$3" -pin "$4" &)`,
		self, strconv.Itoa(rounds), cpuProfile, openall, pin, listenerCPU)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, []*os.File{w}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-kernel:", err)
		return 1
	}
	w.Close()
	b, _ := io.ReadAll(r) // until the orphan exits
	if strings.TrimSpace(string(b)) != "ok" {
		return 1
	}
	return 0
}

func execStorm(prog string) {
	for i := 0; i < execs; i++ {
		if err := exec.Command(prog).Run(); err != nil {
			fmt.Fprintln(os.Stderr, "exec:", err)
			os.Exit(1)
		}
	}
}

func openStorm(file string) {
	for i := 0; i < opens; i++ {
		fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(1)
		}
		unix.Close(fd)
	}
}

type world struct {
	dir, sys, self string
	fapolicyd_     string // the daemon's path, once prepared
	fapolicydConf  []byte // its config before prepareFapolicyd
}

func setup() (*world, func(), error) {
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("needs root (fanotify, eBPF, a tmpfs mount)")
	}
	dir, err := os.MkdirTemp("", "lineage-bench-")
	if err != nil {
		return nil, nil, err
	}
	if err := unix.Mount("lineage-bench", dir, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
		os.Remove(dir)
		return nil, nil, fmt.Errorf("mounting a tmpfs: %w", err)
	}
	cleanup := func() { unix.Unmount(dir, unix.MNT_DETACH); os.Remove(dir) }
	w := &world{dir: dir, sys: filepath.Join(dir, "sys")}
	os.MkdirAll(w.sys, 0o755)
	truePath, err := exec.LookPath("true")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	b, err := os.ReadFile(truePath)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	os.WriteFile(filepath.Join(w.sys, "true"), b, 0o755)
	os.WriteFile(filepath.Join(w.sys, "file"), []byte("data\n"), 0o644)
	// The workload runs from a copy of this program outside the mount.
	self, err := os.Executable()
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	w.self = self
	return w, cleanup, nil
}

// storm is one workload's measurement: its wall time, and the CPU time
// this process (the listener, when it is one of ours) spent meanwhile.
type storm struct{ wall, cpu time.Duration }

// storms runs both workloads in a child process and measures each.
func (w *world) storms() (execS, openS storm, err error) {
	measure := func(args ...string) (storm, error) {
		cmd := exec.Command(w.self, args...)
		if pin != "" {
			cmd = exec.Command("taskset", append([]string{"-c", "0", w.self}, args...)...)
		}
		c0, t := selfCPU(), time.Now()
		out, err := cmd.CombinedOutput()
		s := storm{wall: time.Since(t), cpu: selfCPU() - c0}
		if err != nil {
			return s, fmt.Errorf("%v: %s", err, out)
		}
		return s, nil
	}
	if execS, err = measure("-execs", filepath.Join(w.sys, "true")); err != nil {
		return execS, openS, fmt.Errorf("exec storm: %w", err)
	}
	if openS, err = measure("-opens", filepath.Join(w.sys, "file")); err != nil {
		return execS, openS, fmt.Errorf("open storm: %w", err)
	}
	return execS, openS, nil
}

// selfCPU is the user and system CPU time this process has used, its
// children's not included (getrusage(RUSAGE_SELF)).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// condition is one way of running the storms: start sets it up, and the
// function it returns tears it down (and reports what went wrong during
// the run, such as a denial).
type condition struct {
	name  string
	start func() (stop func() error, err error)
	note  string // why it was not measured
	execT []time.Duration
	open  []time.Duration
	// This process's CPU time during each storm: with the floor or
	// Lineage, the listener's (fapolicyd is another process).
	execCPU []time.Duration
	openCPU []time.Duration
}

func run(rounds int) error {
	w, cleanup, err := setup()
	if err != nil {
		return err
	}
	defer cleanup()
	lineage, closeLineage, err := w.lineage(builtin.ZonesSource, builtin.Zones)
	if err != nil {
		return err
	}
	defer closeLineage()
	conds := []*condition{
		{name: "no listener", start: func() (func() error, error) { return func() error { return nil }, nil }},
		{name: "minimal listener (floor)", start: w.listener},
		{name: "fapolicyd (permissive)", start: w.fapolicyd},
		{name: "Lineage (zones plugin)", start: lineage},
		{name: "Lineage (openall: marks)", note: "not measured: no -openall plugin given"},
	}
	if openallPath != "" {
		wasm, err := os.ReadFile(openallPath)
		if err != nil {
			return err
		}
		start, closeOpenall, err := w.lineage("openall", wasm)
		if err != nil {
			return fmt.Errorf("openall: %w", err)
		}
		defer closeOpenall()
		conds[4].start, conds[4].note = start, ""
	}
	if err := w.prepareFapolicyd(); err != nil {
		conds[2].note = "not measured: " + err.Error()
	} else {
		defer w.restoreFapolicyd()
	}
	// Rounds interleave the conditions, so that a slow minute on a shared
	// machine lands on all of them rather than on one.
	for i := 0; i < rounds; i++ {
		for ci, c := range conds {
			if c.note != "" {
				continue
			}
			stop, err := c.start()
			if err != nil {
				if ci == 2 {
					c.note = "not measured: " + err.Error()
					continue
				}
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if ci == 3 && i == 0 && cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					stop()
					return err
				}
				pprof.StartCPUProfile(f)
			}
			e, o, err := w.storms()
			if ci == 3 && i == 0 && cpuProfile != "" {
				pprof.StopCPUProfile()
			}
			if serr := stop(); err == nil {
				err = serr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.execT, c.open = append(c.execT, e.wall), append(c.open, o.wall)
			c.execCPU, c.openCPU = append(c.execCPU, e.cpu), append(c.openCPU, o.cpu)
		}
	}

	floor := conds[1]
	placed := map[string]string{"": "placed by the scheduler", "same": "all on CPU 0", "split": "workloads on CPU 0, listeners on CPU 1"}[pin]
	fmt.Printf("%d fork+exec and %d open+close on a tmpfs; %d rounds, conditions interleaved; fastest and median; %s\n\n", execs, opens, rounds, placed)
	fmt.Printf("%-26s %21s %12s %21s %12s\n", "condition", "exec storm", "x floor", "open storm", "x floor")
	for _, c := range conds {
		if c.note != "" {
			fmt.Printf("%-26s %s\n", c.name, c.note)
			continue
		}
		fmt.Printf("%-26s %10v %10v %5.2f %5.2f  %10v %10v %5.2f %5.2f\n", c.name,
			fastest(c.execT).Round(time.Millisecond), median(c.execT).Round(time.Millisecond),
			ratio(fastest(c.execT), fastest(floor.execT)), ratio(median(c.execT), median(floor.execT)),
			fastest(c.open).Round(time.Millisecond), median(c.open).Round(time.Millisecond),
			ratio(fastest(c.open), fastest(floor.open)), ratio(median(c.open), median(floor.open)))
	}
	none, lin := conds[0], conds[3]
	fmt.Printf("\nper event over no listener (medians): floor %v (exec) %v (open); Lineage %v (exec) %v (open)\n",
		perEvent(median(floor.execT), median(none.execT), execs), perEvent(median(floor.open), median(none.open), opens),
		perEvent(median(lin.execT), median(none.execT), execs), perEvent(median(lin.open), median(none.open), opens))
	// Each round runs the conditions one after another: the ratio within
	// a round cancels the drift between rounds that the medians carry.
	fmt.Printf("Lineage over the floor, median of per-round ratios: %.2fx (exec) %.2fx (open)\n",
		pairedRatio(lin.execT, floor.execT), pairedRatio(lin.open, floor.open))
	// This process's CPU per event: with the floor or Lineage, the
	// listener's work (its reads, answers and lookups, and switches into
	// and out of its threads) on top of what the process spends waiting
	// for the workload with no listener. It moves less with the other
	// tenants of a shared machine than wall time does.
	fmt.Printf("this process's CPU per event (medians): no listener %v (exec) %v (open); floor %v (exec) %v (open); Lineage %v (exec) %v (open)\n",
		perEvent(median(none.execCPU), 0, execs), perEvent(median(none.openCPU), 0, opens),
		perEvent(median(floor.execCPU), 0, execs), perEvent(median(floor.openCPU), 0, opens),
		perEvent(median(lin.execCPU), 0, execs), perEvent(median(lin.openCPU), 0, opens))
	if om := conds[4]; om.note == "" {
		fmt.Printf("Lineage with ignore marks, per event over no listener (medians): %v (exec) %v (open)\n",
			perEvent(median(om.execT), median(none.execT), execs), perEvent(median(om.open), median(none.open), opens))
	}
	if fa := conds[2]; fa.note == "" {
		fmt.Printf("Lineage's open storm is %.2fx fapolicyd's (fastest), %.2fx (median)\n",
			ratio(fastest(lin.open), fastest(fa.open)), ratio(median(lin.open), median(fa.open)))
	}
	return nil
}

func fastest(d []time.Duration) time.Duration { return slices.Min(d) }

// pairedRatio is the median over rounds of a[i]/b[i].
func pairedRatio(a, b []time.Duration) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = ratio(a[i], b[i])
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func perEvent(t, base time.Duration, n int) time.Duration {
	return ((t - base) / time.Duration(n)).Round(100 * time.Nanosecond)
}

// listener starts the floor: the least a user-space permission hook can
// do, a loop that reads events and allows each at once, with no lookups,
// no queue and no deadline machinery.
func (w *world) listener() (func() error, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, w.dir); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fanotify_mark: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				return // closed
			}
			for b := buf[:n]; len(b) >= unix.FAN_EVENT_METADATA_LEN; {
				m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
				if m.Fd >= 0 {
					resp := unix.FanotifyResponse{Fd: m.Fd, Response: unix.FAN_ALLOW}
					unix.Write(fd, (*[8]byte)(unsafe.Pointer(&resp))[:])
					unix.Close(int(m.Fd))
				}
				b = b[m.Event_len:]
			}
		}
	}()
	return func() error {
		// Closing the group does not wake the blocked read: make one more
		// event arrive so the loop sees the close.
		unix.Close(fd)
		os.ReadFile(filepath.Join(w.sys, "file"))
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return nil
	}, nil
}

// lineage loads the reference plugin once and returns the condition's
// start: an agent over the engine, as `host run` makes it.
func (w *world) lineage(name string, wasm []byte) (start func() (func() error, error), closeAll func(), err error) {
	ctx := context.Background()
	selfDir := filepath.Dir(w.self) + "/"
	cfg, _ := json.Marshal(map[string]any{
		// The workload runs from this program's directory: system space
		// here, so the storms are a system process's, as a build or a
		// service would be.
		"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", selfDir, w.sys + "/"},
	})
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		return nil, nil, err
	}
	if name != builtin.ZonesSource {
		cfg = nil
	}
	p, err := rt.Load(ctx, name, wasm, cfg)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, err
	}
	e, err := host.New(host.Config{}, p)
	if err != nil {
		p.Close(ctx)
		rt.Close(ctx)
		return nil, nil, err
	}
	closeAll = func() { e.Close(); p.Close(ctx); rt.Close(ctx) }
	start = func() (func() error, error) {
		ctx, cancel := context.WithCancel(ctx)
		a, err := agent.Start(ctx, e, agent.Config{Marks: []string{w.dir}})
		if err != nil {
			cancel()
			return nil, err
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return func() error {
			cancel()
			a.Close()
			err := <-done
			st, fs := a.Stats(), a.Fanotify()
			fmt.Fprintf(os.Stderr, "Lineage (%s): %d events; %d answered on the reader from the cache; %d ignore marks; %d denials, %d unresolved, %d deadline, %d queue full\n",
				name, fs.Events, st.Fast, st.Ignored, st.Denials, st.Unresolved, fs.Deadline, fs.QueueFull)
			if st.Denials > 0 {
				return fmt.Errorf("Lineage denied %d requests of the workload", st.Denials)
			}
			return err
		}, nil
	}
	return start, closeAll, nil
}

// prepareFapolicyd configures Debian's fapolicyd for machines without
// systemd, in permissive mode; restoreFapolicyd puts the config back.
func (w *world) prepareFapolicyd() error {
	bin, err := exec.LookPath("fapolicyd")
	if err != nil {
		return errors.New("fapolicyd is not installed (apt-get install fapolicyd)")
	}
	w.fapolicyd_ = bin
	conf := "/etc/fapolicyd/fapolicyd.conf"
	orig, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	w.fapolicydConf = orig
	var lines []string
	for _, l := range strings.Split(string(orig), "\n") {
		k, _, _ := strings.Cut(l, "=")
		switch strings.TrimSpace(k) {
		case "uid", "gid", "trust", "permissive":
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, "uid = root", "gid = root", "trust = file", "permissive = 1")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("fagenrules", "--load").CombinedOutput(); err != nil {
		w.restoreFapolicyd()
		return fmt.Errorf("fagenrules --load: %v: %s", err, out)
	}
	return nil
}

func (w *world) restoreFapolicyd() {
	if w.fapolicydConf != nil {
		os.WriteFile("/etc/fapolicyd/fapolicyd.conf", w.fapolicydConf, 0o644)
	}
}

// fapolicyd starts the daemon and waits until it listens.
func (w *world) fapolicyd() (func() error, error) {
	cmd := exec.Command(w.fapolicyd_, "--debug", "--permissive")
	logf, err := os.CreateTemp("", "fapolicyd-log-")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(logf.Name())
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() error {
		defer os.Remove(logf.Name())
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		return nil
	}
	// Ready when it says it listens (or after 30s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logf.Name())
		if strings.Contains(string(b), "Starting to listen for events") {
			return stop, nil
		}
		select {
		case <-exited:
			stop()
			return nil, fmt.Errorf("fapolicyd exited: %s", lastLines(string(b), 5))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("fapolicyd did not start: %s", lastLines(string(b), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

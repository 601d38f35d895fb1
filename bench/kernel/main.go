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

var cpuProfile string

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
	rounds := flag.Int("rounds", 3, "measure each condition this many times and keep the fastest")
	orphan := flag.Bool("orphan", false, "internal: run as an orphan (see orphaned)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the Lineage condition to `FILE`")
	flag.Parse()
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
	cmd := exec.Command("sh", "-c", `("$0" -orphan -rounds "$1" -cpuprofile "$2" &)`, self, strconv.Itoa(rounds), cpuProfile)
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

type world struct{ dir, sys, self string }

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

// storms runs both workloads in a child process and returns their times.
func (w *world) storms() (execT, openT time.Duration, err error) {
	t := time.Now()
	if out, err := exec.Command(w.self, "-execs", filepath.Join(w.sys, "true")).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("exec storm: %v: %s", err, out)
	}
	execT = time.Since(t)
	t = time.Now()
	if out, err := exec.Command(w.self, "-opens", filepath.Join(w.sys, "file")).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("open storm: %v: %s", err, out)
	}
	openT = time.Since(t)
	return execT, openT, nil
}

type result struct {
	name        string
	execT, open time.Duration
	note        string
}

func (w *world) best(rounds int) (result, error) {
	var r result
	for i := 0; i < rounds; i++ {
		e, o, err := w.storms()
		if err != nil {
			return r, err
		}
		if r.execT == 0 || e < r.execT {
			r.execT = e
		}
		if r.open == 0 || o < r.open {
			r.open = o
		}
	}
	return r, nil
}

func run(rounds int) error {
	w, cleanup, err := setup()
	if err != nil {
		return err
	}
	defer cleanup()
	var results []result

	// 1. No listener.
	r, err := w.best(rounds)
	if err != nil {
		return err
	}
	r.name = "no listener"
	results = append(results, r)

	// 2. The floor: a listener that allows everything.
	r, err = w.withListener(rounds)
	if err != nil {
		return err
	}
	results = append(results, r)

	// 3. fapolicyd, permissive.
	r, err = w.withFapolicyd(rounds)
	if err != nil {
		r = result{name: "fapolicyd (permissive)", note: "not measured: " + err.Error()}
	}
	results = append(results, r)

	// 4. Lineage.
	r, err = w.withLineage(rounds)
	if err != nil {
		return err
	}
	results = append(results, r)

	floor := results[1]
	fmt.Printf("%d fork+exec and %d open+close on a tmpfs, fastest of %d rounds\n\n", execs, opens, rounds)
	fmt.Printf("%-26s %12s %8s %12s %8s\n", "condition", "exec storm", "x floor", "open storm", "x floor")
	for _, r := range results {
		if r.execT == 0 {
			fmt.Printf("%-26s %s\n", r.name, r.note)
			continue
		}
		fmt.Printf("%-26s %12v %8.2f %12v %8.2f\n", r.name, r.execT.Round(time.Millisecond), ratio(r.execT, floor.execT),
			r.open.Round(time.Millisecond), ratio(r.open, floor.open))
	}
	fmt.Printf("\nper event over no listener: floor %v (exec) %v (open); Lineage %v (exec) %v (open)\n",
		perEvent(floor.execT, results[0].execT, execs), perEvent(floor.open, results[0].open, opens),
		perEvent(results[3].execT, results[0].execT, execs), perEvent(results[3].open, results[0].open, opens))
	if fa := results[2]; fa.open != 0 {
		fmt.Printf("Lineage's open storm is %.2fx fapolicyd's\n", ratio(results[3].open, fa.open))
	}
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func perEvent(t, base time.Duration, n int) time.Duration {
	return ((t - base) / time.Duration(n)).Round(100 * time.Nanosecond)
}

// withListener measures the floor: the least a user-space permission hook
// can do, a loop that reads events and allows each at once, with no
// lookups, no queue and no deadline machinery.
func (w *world) withListener(rounds int) (result, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return result{}, fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, w.dir); err != nil {
		unix.Close(fd)
		return result{}, fmt.Errorf("fanotify_mark: %w", err)
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
	r, err := w.best(rounds)
	// Closing the group wakes the blocked read? Not reliably: make one
	// more event arrive so the loop sees the close.
	unix.Close(fd)
	os.ReadFile(filepath.Join(w.sys, "file"))
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	r.name = "minimal listener (floor)"
	return r, err
}

func (w *world) withLineage(rounds int) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	selfDir := filepath.Dir(w.self) + "/"
	cfg, _ := json.Marshal(map[string]any{
		// The workload runs from this program's directory: system space
		// here, so the storms are a system process's, as a build or a
		// service would be.
		"system_space": []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", selfDir, w.sys + "/"},
	})
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{})
	if err != nil {
		return result{}, err
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, builtin.ZonesSource, builtin.Zones, cfg)
	if err != nil {
		return result{}, err
	}
	defer p.Close(ctx)
	e, err := host.New(host.Config{}, p)
	if err != nil {
		return result{}, err
	}
	defer e.Close()
	a, err := agent.Start(ctx, e, agent.Config{Marks: []string{w.dir}})
	if err != nil {
		return result{}, err
	}
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return result{}, err
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
	}
	r, err := w.best(rounds)
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	cancel()
	a.Close()
	<-done
	st := a.Stats()
	fs := a.Fanotify()
	fmt.Fprintf(os.Stderr, "Lineage: %d events, %d decisions, %d on the reader from the cache, %d denials, %d unresolved; deadline %d, queue full %d; %d forks %d execs %d exits applied\n",
		fs.Events, st.Decisions, st.Fast, st.Denials, st.Unresolved, fs.Deadline, fs.QueueFull, st.Forks, st.Execs, st.Exits)
	r.name = "Lineage (zones plugin)"
	if st.Denials > 0 {
		return r, fmt.Errorf("Lineage denied %d requests of the workload", st.Denials)
	}
	return r, err
}

// withFapolicyd runs fapolicyd from Debian's package in permissive mode
// with a config for machines without systemd, and measures.
func (w *world) withFapolicyd(rounds int) (result, error) {
	bin, err := exec.LookPath("fapolicyd")
	if err != nil {
		return result{}, errors.New("fapolicyd is not installed (apt-get install fapolicyd)")
	}
	conf := "/etc/fapolicyd/fapolicyd.conf"
	orig, err := os.ReadFile(conf)
	if err != nil {
		return result{}, err
	}
	defer os.WriteFile(conf, orig, 0o644)
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
		return result{}, err
	}
	if out, err := exec.Command("fagenrules", "--load").CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("fagenrules --load: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "--debug", "--permissive")
	logf, _ := os.CreateTemp("", "fapolicyd-log-")
	defer os.Remove(logf.Name())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	defer stop()
	// Ready when it says it listens (or after 30s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logf.Name())
		if strings.Contains(string(b), "Starting to listen for events") {
			break
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			return result{}, fmt.Errorf("fapolicyd did not start: %s", lastLines(string(b), 5))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, err := w.best(rounds)
	r.name = "fapolicyd (permissive)"
	return r, err
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

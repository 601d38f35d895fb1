//go:build linux

package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hostAgent is `host run` as a separate process.
type hostAgent struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// syncBuffer is a strings.Builder that exec's copying goroutine writes
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildHost builds the host binary once per test.
func buildHost(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "host")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/host").CombinedOutput()
	if err != nil {
		t.Fatalf("building host: %v\n%s", err, out)
	}
	return bin
}

// runHost starts `host run --config` for the world and waits until it
// guards the mount.
func (w *world) runHost(t *testing.T, bin string) *hostAgent {
	t.Helper()
	cfg := filepath.Join(w.ctl, "host.json")
	b, _ := json.Marshal(map[string]any{
		"plugin_config": map[string]any{"zones": map[string]any{
			"system_space":    []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", w.dir + "/sys/"},
			"private_folders": []string{w.dir + "/home/*/.ssh/"},
		}},
		"agent": map[string]any{"marks": []string{w.dir}, "deadline": "2s"},
	})
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--no-compile-cache")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &hostAgent{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var seen strings.Builder
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "guarding ") {
				ready <- seen.String()
			}
		}
	}()
	select {
	case s := <-ready:
		t.Logf("host run:\n%s", s)
	case <-time.After(60 * time.Second):
		t.Fatalf("host run did not start guarding; stderr:\n%s", h.stderr)
	}
	return h
}

// The end-to-end run with the host binary: the guarded chain is denied;
// then, with the whole chain still running, the agent is killed with
// SIGKILL: no process stays blocked on the mount; a restarted agent
// rebuilds the chain's zones from /proc, and the guarded bash, resumed,
// is denied again.
func TestE2EKillAndRestart(t *testing.T) {
	w := newWorld(t)
	bin := buildHost(t)
	h := w.runHost(t, bin)

	first := w.chain(t, "thunderbird")
	for _, k := range []string{"exec-user-space", "write-system-space", "read-private", "load-user-library"} {
		if !strings.Contains(first[k], "operation not permitted") {
			t.Fatalf("under host run, guarded bash, %s: %q, want EPERM (all: %v)\nstderr:\n%s", k, first[k], first, h.stderr)
		}
	}
	if !strings.Contains(h.stderr.String(), `"@message":"deny"`) {
		t.Errorf("no JSON denial on host run's stderr:\n%s", h.stderr)
	}

	// A chain that waits in bash, all four processes alive.
	gate := filepath.Join(w.ctl, "go-on")
	out := w.start(t, "thunderbird", "-wait", gate)
	waitFor(t, "the waiting chain", func() bool { return pidOf(w.dir+"/sys/bash") != 0 })

	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
	// Nothing stays blocked: a fresh process reads a guarded file at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "cat", filepath.Join(w.dir, "sys/etc/config")).Output(); err != nil || string(b) != "original\n" {
		t.Fatalf("after SIGKILL of the agent, reading a guarded file: %q %v", b, err)
	}

	h2 := w.runHost(t, bin)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	second := w.results(t, out)
	for _, k := range []string{"exec-user-space", "write-system-space", "read-private", "load-user-library"} {
		if !strings.Contains(second[k], "operation not permitted") {
			t.Errorf("after the restart, the running guarded bash, %s: %q, want EPERM (all: %v)\nstderr:\n%s", k, second[k], second, h2.stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(w.dir, "sys/etc/config")); string(b) != "original\n" {
		t.Errorf("sys/etc/config now holds %q", b)
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidOf returns the pid of a process running exe, or 0.
func pidOf(exe string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && l == exe {
			var pid int
			for _, c := range e.Name() {
				pid = pid*10 + int(c-'0')
			}
			return pid
		}
	}
	return 0
}

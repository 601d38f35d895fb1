//go:build linux

package proctrack

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectIsFreshBuild regenerates the eBPF object and its bindings from
// ../bpf/proctrack.c and checks the committed copies are byte-identical,
// so what runs is what the source says. It needs clang and libbpf-dev.
func TestObjectIsFreshBuild(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("clang (Debian packages clang, llvm, libbpf-dev) is needed to regenerate the eBPF object: %v", err)
		}
		t.Skip("clang not installed (Debian: clang llvm libbpf-dev); CI installs it and runs this test")
	}
	if testing.Short() {
		t.Skip("short mode: compiles the eBPF program")
	}
	out := t.TempDir()
	// The command is gen.go's go:generate line, so the two cannot differ.
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, l := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(l, "//go:generate go tool bpf2go "); ok {
			args = append([]string{"tool", "bpf2go", "-output-dir", out}, strings.Fields(rest)...)
		}
	}
	if args == nil {
		t.Fatal("gen.go has no go:generate line for bpf2go")
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=proctrack")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{"proctrack_bpfel.o", "proctrack_bpfel.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build: run go generate ./kernel/linux/proctrack", f)
		}
	}
}

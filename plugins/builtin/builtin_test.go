package builtin

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"lineage.dev/lineage/abi"
)

// TestZonesIsFreshBuild rebuilds plugins/zones with the Makefile's recipe
// and checks the embedded copy is byte-identical, so the host never ships
// a policy that differs from its source. Run `make embed` to refresh it.
func TestZonesIsFreshBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: builds the plugin with the Go toolchain")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed to rebuild the plugin: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "plugins", "PLUGIN_OUT="+out)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make plugins: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(filepath.Join(out, "zones.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, Zones) {
		t.Fatalf("plugins/builtin/zones.wasm (%d bytes) differs from a fresh build (%d bytes): run `make embed`", len(Zones), len(fresh))
	}
}

func TestZonesMetadata(t *testing.T) {
	m, err := abi.ReadMetadata(Zones)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "zones" || m.Major != abi.Major || m.Entry != abi.EntryClassify|abi.EntryDecide || m.Ops != abi.AllOps {
		t.Fatalf("metadata %+v", m)
	}
}

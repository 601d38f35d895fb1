//go:build !wasip1

package main

// This test runs natively: it builds the plugin for wasip1, runs it under
// wazero through the raw ABI exports (as the host will), and checks that
// the WebAssembly build answers exactly as the policy package does.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/plugins/zones/policy"
)

// plugin is one instantiated module.
type wasmPlugin struct {
	t                      *testing.T
	mod                    api.Module
	buf                    uint32
	size                   uint32
	init, classify, decide api.Function
	ctx                    context.Context
}

func buildPlugin(t *testing.T) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the plugin with the go command")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	out := filepath.Join(t.TempDir(), "zones.wasm")
	cmd := exec.Command(gocmd, "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-buildid=", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// compiled is the plugin compiled once, for several instances.
type compiled struct {
	rt  wazero.Runtime
	mod wazero.CompiledModule
	n   int
}

func compile(t *testing.T, wasm []byte) *compiled {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	mod, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compiling: %v", err)
	}
	return &compiled{rt: rt, mod: mod}
}

func (c *compiled) instantiate(t *testing.T) *wasmPlugin {
	t.Helper()
	ctx := context.Background()
	c.n++
	cfg := wazero.NewModuleConfig().WithName(fmt.Sprintf("zones-%d", c.n)).WithStartFunctions(abi.ExportInitialize)
	mod, err := c.rt.InstantiateModule(ctx, c.mod, cfg)
	if err != nil {
		t.Fatalf("instantiating: %v", err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	p := &wasmPlugin{t: t, mod: mod, ctx: ctx,
		init: mod.ExportedFunction(abi.ExportInit), classify: mod.ExportedFunction(abi.ExportClassify), decide: mod.ExportedFunction(abi.ExportDecide)}
	if p.init == nil || p.classify == nil || p.decide == nil {
		t.Fatal("an entry point is not exported")
	}
	p.buf = uint32(p.call(mod.ExportedFunction(abi.ExportBuffer)))
	p.size = uint32(p.call(mod.ExportedFunction(abi.ExportBufferSize)))
	if p.size < abi.MinBufferSize {
		t.Fatalf("buffer of %d bytes", p.size)
	}
	return p
}

func (p *wasmPlugin) call(f api.Function, args ...uint64) int32 {
	p.t.Helper()
	res, err := f.Call(p.ctx, args...)
	if err != nil {
		p.t.Fatalf("calling %s: %v", f.Definition().Name(), err)
	}
	return int32(res[0])
}

func (p *wasmPlugin) write(b []byte) {
	if !p.mod.Memory().Write(p.buf, b) {
		p.t.Fatal("writing the buffer")
	}
}

// result returns the answer bytes, or fails with the plugin's error.
func (p *wasmPlugin) result(rc int32) []byte {
	p.t.Helper()
	if rc < 0 {
		p.t.Fatalf("plugin error %s: %s", abi.ErrorCode(-rc), p.errorMessage())
	}
	b, ok := p.mod.Memory().Read(p.buf, uint32(rc))
	if !ok {
		p.t.Fatal("reading the buffer")
	}
	return b
}

func (p *wasmPlugin) errorMessage() string {
	b, _ := p.mod.Memory().Read(p.buf, p.size)
	return abi.ReadErrorMessage(b)
}

func (p *wasmPlugin) initConfig(cfg []byte) int32 {
	p.write(cfg)
	return p.call(p.init, uint64(len(cfg)))
}

func (p *wasmPlugin) doDecide(req *abi.DecideRequest) abi.DecideResponse {
	p.t.Helper()
	b := make([]byte, req.Size())
	if _, err := req.Encode(b); err != nil {
		p.t.Fatal(err)
	}
	p.write(b)
	var resp abi.DecideResponse
	if err := resp.Decode(p.result(p.call(p.decide, uint64(len(b)))), req.Op); err != nil {
		p.t.Fatal(err)
	}
	return resp
}

func (p *wasmPlugin) doClassify(req *abi.ClassifyRequest) abi.ClassifyResponse {
	p.t.Helper()
	b := make([]byte, req.Size())
	if _, err := req.Encode(b); err != nil {
		p.t.Fatal(err)
	}
	p.write(b)
	var resp abi.ClassifyResponse
	if err := resp.Decode(p.result(p.call(p.classify, uint64(len(b))))); err != nil {
		p.t.Fatal(err)
	}
	return resp
}

func TestWasmPlugin(t *testing.T) {
	c := compile(t, buildPlugin(t))

	t.Run("bad config", func(t *testing.T) {
		p := c.instantiate(t)
		rc := p.initConfig([]byte(`{"guarded_tcp_ports": [25, 53, 70000]}`))
		want := "config: guarded_tcp_ports[2]: 70000 is not a port (want 1..65535)"
		if abi.ErrorCode(-rc) != abi.ErrCodeConfig || p.errorMessage() != want {
			t.Errorf("got %d %q, want %s %q", rc, p.errorMessage(), abi.ErrCodeConfig, want)
		}
	})

	example, err := os.ReadFile("config.example.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string][]byte{"no config": nil, "example config": example} {
		t.Run(name, func(t *testing.T) {
			p := c.instantiate(t)
			if rc := p.initConfig(cfg); rc != 0 {
				t.Fatalf("init: %s: %s", abi.ErrorCode(-rc), p.errorMessage())
			}
			c, err := policy.ParseConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			native, err := policy.New(c)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, p, native)
		})
	}
}

// compare drives both with the same classify chains and decide requests.
func compare(t *testing.T, p *wasmPlugin, native *policy.Policy) {
	exes := []string{
		`C:\Windows\explorer.exe`, `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`,
		`C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, `C:\Users\bob\AppData\Local\Temp\payload.exe`,
		"/usr/bin/bash", "/usr/bin/thunderbird", "/tmp/x", `\\srv\share\x.exe`, "",
	}
	objects := []string{
		"/usr/bin/bash", "/home/bob/.ssh/id_rsa", "/home/bob/notes.txt", "/tmp/x", "/usr", "",
		`C:\Windows\System32\evil.dll`, `c:/users/bob/documents/private/a`, `\\srv\share\x`, `\\?\C:\x`,
		`HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`, `HKLM\Software\x`, `HKCU\Software\Foo`, `HKXX\y`,
	}
	var subjects []abi.ClassifyResponse
	for _, creator := range []abi.ClassifyRequest{
		{Flags: abi.FlagCreatorUnknown}, {CreatorZone: policy.ZoneSystem},
		{CreatorZone: policy.ZoneGuarded, CreatorState: "1:OUTLOOK.EXE"}, {CreatorZone: policy.ZoneUntrusted, CreatorState: "x"},
		{Flags: abi.FlagInPlace, CreatorZone: policy.ZoneGuarded, CreatorState: "1i:evince"},
	} {
		for _, exe := range exes {
			for fs := abi.FSLocal; fs <= abi.FSRemovable; fs++ {
				req := creator
				req.Exe, req.FS, req.CreatorExe = exe, fs, exes[0]
				got, want := p.doClassify(&req), native.Classify(&req)
				if got != want {
					t.Fatalf("classify %+v:\nwasm   %+v\nnative %+v", req, got, want)
				}
				subjects = append(subjects, got)
			}
		}
	}
	subjects = append(subjects, abi.ClassifyResponse{Zone: "quarantine", State: "q"})
	n := 0
	for _, s := range subjects {
		for _, op := range append(abi.Ops(), abi.Op(13)) {
			for i, obj := range objects {
				req := abi.DecideRequest{Op: op, Zone: s.Zone, State: s.State, Object: obj, FS: abi.FSKind(i % 3),
					Proto: []abi.Proto{abi.ProtoTCP, abi.ProtoUDP, abi.ProtoNone}[i%3], Port: []uint16{443, 4444, 53, 0}[i%4]}
				if !op.Valid() {
					continue // the ABI encoder rejects it, as the host would
				}
				got, want := p.doDecide(&req), native.Decide(&req)
				if got != want {
					t.Fatalf("decide %+v:\nwasm   %+v\nnative %+v", req, got, want)
				}
				n++
			}
		}
	}
	if n < 1000 || !strings.Contains(subjects[len(subjects)-2].State, "evince") {
		t.Fatalf("compared only %d answers", n)
	}
}

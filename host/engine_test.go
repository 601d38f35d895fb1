package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/plugins/builtin"
)

var ctx = context.Background()

// testLimits keep failing calls quick; the deadline is generous enough
// that a well-behaved call under -race never hits it.
var testLimits = Limits{
	CallDeadline: 200 * time.Millisecond, InitDeadline: 5 * time.Second,
	MemoryBytes: 16 << 20, Instances: 2, QuarantineAfter: 1 << 20,
}

func newTestRuntime(t testing.TB, lim Limits) *Runtime {
	t.Helper()
	rt, err := NewRuntime(ctx, RuntimeOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	return rt
}

// loadBehave loads testdata/behave.wasm under name with the behaviour
// selected by mode (see behave.wat).
func loadBehave(t testing.TB, rt *Runtime, name string, mode byte) *Plugin {
	t.Helper()
	wasm, err := os.ReadFile("testdata/behave.wasm")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := abi.ReadMetadata(wasm)
	if err != nil {
		t.Fatal(err)
	}
	meta.Name = name
	if wasm, err = abi.AppendMetadata(wasm, meta); err != nil {
		t.Fatal(err)
	}
	p, err := rt.Load(ctx, "testdata/behave.wasm#"+name, wasm, []byte{mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	return p
}

func newTestEngine(t testing.TB, cfg Config, plugins ...*Plugin) *Engine {
	t.Helper()
	e, err := New(cfg, plugins...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

var proc1 = ProcessID{PID: 1, Start: 1}

func writeReq(path string) *Request {
	return &Request{Subject: proc1, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite, Object: path}}
}

// TestContainment: a plugin that loops, traps, exhausts memory, recurses
// without bound or answers garbage costs one decision its zone's failure
// verdict, never cached, and the engine goes on.
func TestContainment(t *testing.T) {
	tests := []struct {
		mode byte
		name string
		want string // in the failure reason
	}{
		{'l', "infinite loop", "deadline"},
		{'t', "trap", "trap"},
		// Resource exhaustion traps, or hits the deadline first on a
		// slow machine (-race): contained either way.
		{'g', "memory-grow bomb", "trap|deadline"},
		{'r', "unbounded recursion", "trap|deadline"},
		{'v', "verdict out of range", "malformed answer"},
		{'o', "answer longer than the buffer", "malformed answer"},
		{'p', "prefix scope longer than the object", "malformed answer"},
		{'e', "error code", "error code: internal plugin error: boom"},
	}
	rt := newTestRuntime(t, testLimits)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := loadBehave(t, rt, "behave", tc.mode)
			e := newTestEngine(t, Config{}, p)
			e.Exist(ctx, proc1, "/usr/bin/bash", abi.FSLocal)
			for i := 0; i < 3; i++ {
				start := time.Now()
				d, err := e.Decide(ctx, writeReq("/tmp/x"))
				if err != nil {
					t.Fatal(err)
				}
				if !d.Failure || d.Cached || d.Verdict != abi.Deny || !containsAny(d.Reason, tc.want) {
					t.Fatalf("call %d: got %+v, want an uncached failure deny mentioning %q", i, d, tc.want)
				}
				// Not a speed assertion: proof that the call did not hang.
				if el := time.Since(start); el > 10*time.Second {
					t.Fatalf("call %d took %v", i, el)
				}
			}
			if got := p.Info().Failures; got < 3 {
				t.Fatalf("failures %d, want at least 3 (failure verdicts are never cached)", got)
			}
		})
	}
	t.Run("engine goes on", func(t *testing.T) {
		e := newTestEngine(t, Config{}, loadBehave(t, rt, "fine", 'a'))
		e.Exist(ctx, proc1, "/usr/bin/bash", abi.FSLocal)
		d, err := e.Decide(ctx, writeReq("/tmp/x"))
		if err != nil || d.Failure || d.Verdict != abi.Allow {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
}

func TestClassifyFailureUsesFailureZone(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{FailureZone: "quarantine"}, loadBehave(t, rt, "behave", 't'))
	p := e.Exist(ctx, proc1, "/usr/bin/bash", abi.FSLocal)
	if p.Zone != "quarantine" || !p.ClassifyFailed || !strings.Contains(p.Reason, "classification failed") {
		t.Fatalf("got %+v", p)
	}
}

func TestFailureVerdictPerZone(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	p := loadBehave(t, rt, "behave", 't')
	tests := []struct {
		cfg  Config
		want abi.Verdict
	}{
		{Config{}, abi.Deny}, // untrusted: fail closed by default
		{Config{FailureVerdicts: map[string]abi.Verdict{"untrusted": abi.Allow}}, abi.Allow},
		{Config{FailureVerdicts: map[string]abi.Verdict{}, DefaultFailureVerdict: abi.Allow}, abi.Allow},
	}
	for _, tc := range tests {
		e := newTestEngine(t, tc.cfg, p)
		e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal) // classify traps: failure zone untrusted
		d, _ := e.Decide(ctx, writeReq("/x"))
		if d.Verdict != tc.want || !d.Failure {
			t.Errorf("config %+v: got %v (failure %v), want %v", tc.cfg, d.Verdict, d.Failure, tc.want)
		}
	}
}

func TestQuarantine(t *testing.T) {
	lim := testLimits
	lim.QuarantineAfter, lim.QuarantineFor = 3, time.Hour
	rt := newTestRuntime(t, lim)
	p := loadBehave(t, rt, "behave", 't')
	e := newTestEngine(t, Config{}, p)
	e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal) // one failure (classify)
	e.Decide(ctx, writeReq("/a"))
	e.Decide(ctx, writeReq("/b")) // third consecutive failure: quarantined
	calls := p.Info().Calls
	d, _ := e.Decide(ctx, writeReq("/c"))
	if !d.Failure || !strings.Contains(d.Reason, ErrQuarantined.Error()) {
		t.Fatalf("got %+v, want a quarantine failure", d)
	}
	if p.Info().Calls != calls || !p.Info().Quarantined {
		t.Fatalf("a quarantined plugin was called: %+v", p.Info())
	}
}

// TestNoGrowthAfterFailures: discarded instances leave no goroutines and
// no memory behind.
func TestNoGrowthAfterFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: 1,000 failing calls")
	}
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{}, loadBehave(t, rt, "behave", 't'))
	e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal)
	fail := func(n int) {
		for i := 0; i < n; i++ {
			if d, _ := e.Decide(ctx, writeReq("/x")); !d.Failure {
				t.Fatal("call did not fail")
			}
		}
	}
	fail(100)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	fail(1000)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if g := runtime.NumGoroutine(); g > g0+2 {
		t.Errorf("goroutines grew from %d to %d over 1,000 failures", g0, g)
	}
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes over 1,000 failures", grow)
	}
}

func TestComposition(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	allow, deny, abstain := loadBehave(t, rt, "allow", 'a'), loadBehave(t, rt, "deny", 'd'), loadBehave(t, rt, "abstain", 's')
	tests := []struct {
		name    string
		cfg     Config
		plugins []*Plugin
		want    abi.Verdict
		plugin  string
		rule    string
	}{
		{"deny overrides an earlier allow", Config{}, []*Plugin{allow, deny}, abi.Deny, "deny", ""},
		{"deny overrides a later allow", Config{}, []*Plugin{deny, allow}, abi.Deny, "deny", ""},
		{"abstain then allow", Config{}, []*Plugin{abstain, allow}, abi.Allow, "allow", ""},
		{"all abstain: default allow", Config{}, []*Plugin{abstain}, abi.Allow, "", "abstain"},
		{"all abstain: configured deny", Config{AbstainVerdict: abi.Deny}, []*Plugin{abstain}, abi.Deny, "", "abstain"},
		{"no plugins", Config{}, nil, abi.Allow, "", "abstain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, tc.cfg, tc.plugins...)
			p := e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal)
			if p.Zone != "untrusted" || p.Rule != "unclassified" {
				t.Fatalf("zone %q rule %q: behave abstains on classify, so the unclassified zone applies", p.Zone, p.Rule)
			}
			d, err := e.Decide(ctx, writeReq("/x"))
			if err != nil || d.Verdict != tc.want || d.Plugin != tc.plugin || (tc.rule != "" && d.Rule != tc.rule) {
				t.Fatalf("got %+v, %v; want %v from %q", d, err, tc.want, tc.plugin)
			}
		})
	}
	if _, err := New(Config{}, allow, allow); err == nil {
		t.Fatal("two plugins with one name were accepted")
	}
}

func TestIntersect(t *testing.T) {
	any := abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectAny, TTLMillis: 100}
	tests := []struct {
		a, b, want abi.Scope
	}{
		{any, abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPrefix, PrefixLen: 5, TTLMillis: 50},
			abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPrefix, PrefixLen: 5, TTLMillis: 50}},
		{abi.Scope{Object: abi.ObjectPrefix, PrefixLen: 5, TTLMillis: 9}, abi.Scope{Object: abi.ObjectPrefix, PrefixLen: 9, TTLMillis: 10},
			abi.Scope{Object: abi.ObjectPrefix, PrefixLen: 9, TTLMillis: 9}},
		{abi.Scope{Object: abi.ObjectPortRange, PortLo: 1, PortHi: 100, TTLMillis: 1}, abi.Scope{Object: abi.ObjectPortRange, PortLo: 50, PortHi: 200, TTLMillis: 1},
			abi.Scope{Object: abi.ObjectPortRange, PortLo: 50, PortHi: 100, TTLMillis: 1}},
		{abi.Scope{Object: abi.ObjectExact, TTLMillis: 1}, any, abi.Scope{Object: abi.ObjectExact, TTLMillis: 1}},
		{any, abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectAny}, abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectAny}},
	}
	for i, tc := range tests {
		if got := intersect(tc.a, tc.b); got != tc.want {
			t.Errorf("%d: intersect(%+v, %+v) = %+v, want %+v", i, tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCacheAndTTL(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	p := loadBehave(t, rt, "allow", 'a') // scope: any object, all subjects, 60 s
	var now int64
	e := newTestEngine(t, Config{Clock: func() int64 { return now }}, p)
	e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal)
	steps := []struct {
		at     time.Duration
		path   string
		cached bool
	}{
		{0, "/a", false},
		{time.Second, "/b", true}, // any object of the op
		{59 * time.Second, "/c", true},
		{60 * time.Second, "/d", false}, // expired
		{61 * time.Second, "/e", true},
	}
	for _, s := range steps {
		now = int64(s.at)
		d, err := e.Decide(ctx, writeReq(s.path))
		if err != nil || d.Cached != s.cached || d.Verdict != abi.Allow {
			t.Fatalf("at %v %s: got %+v, %v; want cached=%v", s.at, s.path, d, err, s.cached)
		}
	}
	read := &Request{Subject: proc1, DecideRequest: abi.DecideRequest{Op: abi.OpFileRead, Object: "/a"}}
	if d, _ := e.Decide(ctx, read); d.Cached {
		t.Fatal("an answer for file.write served file.read")
	}
	if s := e.Stats(); s.Cache.Hits != 3 || s.Decisions != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAuditMode(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{Mode: Audit}, loadBehave(t, rt, "deny", 'd'))
	e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal)
	d, _ := e.Decide(ctx, writeReq("/x"))
	if d.Verdict != abi.Deny || d.Enforced || d.Effective() != abi.Allow {
		t.Fatalf("got %+v: want a reported, unenforced deny", d)
	}
}

func TestLoadRefusals(t *testing.T) {
	lim := testLimits
	lim.InitDeadline = 300 * time.Millisecond
	rt := newTestRuntime(t, lim)
	good, err := os.ReadFile("testdata/behave.wasm")
	if err != nil {
		t.Fatal(err)
	}
	future := good[:len(good):len(good)]
	tests := []struct {
		name string
		wasm []byte
		cfg  []byte
		want string
	}{
		{"empty", nil, nil, "file is empty"},
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), nil, "not a WebAssembly module"},
		{"truncated", good[:len(good)/2], nil, "runs past the end"},
		{"config rejected", good, []byte("x"), "rejected the config: invalid config: bad config"},
		{"future major", withMajor(t, future, 2), nil, "plugin speaks ABI 2.0, this host speaks 1.0"},
		{"import outside WASI", readFile(t, "testdata/bad-import.wasm"), nil, "imports not allowed (only wasi_snapshot_preview1 functions are): env.open_socket"},
		{"huge declared memory", readFile(t, "testdata/big-memory.wasm"), nil, "memory: declares an initial memory of 16384 pages (1024 MiB), over the host's limit of 256 pages (16 MiB)"},
		{"wrong signature", readFile(t, "testdata/bad-signature.wasm"), nil, "export lineage_decide has signature (i64) -> (i32), want (i32) -> (i32)"},
		{"initializer never returns", readFile(t, "testdata/init-loop.wasm"), nil, "_initialize: deadline: exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rt.Load(ctx, "test.wasm", tc.wasm, tc.cfg)
			if !errors.Is(err, ErrBadPlugin) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadPlugin mentioning %q", err, tc.want)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withMajor rewrites the ABI major in a module's metadata section; the
// field sits at a fixed offset so that hosts can read it without decoding
// the rest.
func withMajor(t *testing.T, wasm []byte, major uint16) []byte {
	t.Helper()
	out := append([]byte(nil), wasm...)
	i := strings.LastIndex(string(out), abi.MetadataSection)
	if i < 0 {
		t.Fatal("no metadata section")
	}
	body := i + len(abi.MetadataSection)
	out[body+4], out[body+5] = byte(major), byte(major>>8)
	return out
}

func TestProcessIdentity(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{}, loadBehave(t, rt, "allow", 'a'))
	parent := e.Exist(ctx, ProcessID{PID: 10, Start: 1}, "/usr/bin/bash", abi.FSLocal)
	child, err := e.Start(ctx, ProcessID{PID: 11, Start: 2}, parent.ID, "/usr/bin/python3", abi.FSLocal)
	if err != nil || child.Creator != parent || !parent.AncestryUnknown || child.AncestryUnknown {
		t.Fatalf("child %+v, %v", child, err)
	}
	forked, err := e.Fork(ProcessID{PID: 12, Start: 3}, child.ID)
	if err != nil || forked.Exe != child.Exe || forked.Zone != child.Zone || forked.Creator != child || forked.Origin != child.Origin {
		t.Fatalf("fork %+v, %v", forked, err)
	}
	// pid 11 exits and is reused: the old identity is gone, the new one
	// is a different process.
	if !e.Exit(child.ID) {
		t.Fatal("exit of a known process reported unknown")
	}
	if e.Process(child.ID) != nil || e.Running(11) != nil {
		t.Fatal("exited process still in the table")
	}
	reused := e.Exist(ctx, ProcessID{PID: 11, Start: 9}, "/usr/bin/vim", abi.FSLocal)
	if e.Running(11) != reused || e.Process(child.ID) != nil {
		t.Fatal("pid reuse confused identities")
	}
	if _, err := e.Decide(ctx, &Request{Subject: child.ID, DecideRequest: abi.DecideRequest{Op: abi.OpFileRead, Object: "/x"}}); !errors.Is(err, ErrUnknownProcess) {
		t.Fatalf("decision for an exited identity: %v", err)
	}
	inplace, err := e.ExecInPlace(ctx, reused.ID, "/usr/bin/nano", abi.FSLocal)
	if err != nil || inplace.Creator != reused || !inplace.InPlace || e.Running(11) != inplace {
		t.Fatalf("exec in place %+v, %v", inplace, err)
	}
}

// TestHammer decides from many goroutines while processes come and go;
// run with -race.
func TestHammer(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{CacheEntries: 32}, loadBehave(t, rt, "allow", 'a'), loadBehave(t, rt, "abstain", 's'))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				id := ProcessID{PID: uint32(g*1000 + i%7), Start: uint64(i)}
				e.Exist(ctx, id, "/bin/sh", abi.FSLocal)
				r := &Request{Subject: id, DecideRequest: abi.DecideRequest{Op: abi.Ops()[i%12], Object: "/x", Proto: abi.ProtoTCP, Port: uint16(i)}}
				if r.Op.Object() == abi.ObjectProcess {
					r.Target = id
				}
				if r.Op.Object() != abi.ObjectEndpoint {
					r.Proto, r.Port = 0, 0
				}
				if d, err := e.Decide(ctx, r); err != nil || d.Failure {
					t.Errorf("decision %d: %+v, %v", i, d, err)
					return
				}
				e.Exit(id)
			}
		}(g)
	}
	wg.Wait()
}

// TestTableGrowth fills the process table past several resizes, reuses
// pids, and checks every identity resolves to its own process.
func TestTableGrowth(t *testing.T) {
	tb := newTable()
	const n = 10000
	for i := 0; i < n; i++ {
		tb.put(newProcess(&Process{ID: ProcessID{PID: uint32(i), Start: 1}, Exe: "/bin/a", Zone: "z"}))
	}
	for i := 0; i < n; i += 2 { // half the pids are reused by new processes
		tb.put(newProcess(&Process{ID: ProcessID{PID: uint32(i), Start: 2}, Exe: "/bin/b", Zone: "z"}))
	}
	if tb.len() != n {
		t.Fatalf("len %d, want %d", tb.len(), n)
	}
	for i := 0; i < n; i++ {
		old, cur := tb.get(ProcessID{PID: uint32(i), Start: 1}), tb.running(uint32(i))
		if i%2 == 0 && (old != nil || cur == nil || cur.ID.Start != 2) || i%2 == 1 && (old == nil || cur != old) {
			t.Fatalf("pid %d: old %v current %v", i, old, cur)
		}
	}
	for i := 0; i < n; i++ {
		if !tb.remove(tb.running(uint32(i)).ID) {
			t.Fatalf("remove %d", i)
		}
	}
	if tb.len() != 0 || tb.running(5) != nil {
		t.Fatal("table not empty")
	}
}

// TestInvalidRequests: a request no plugin can be asked about is an error,
// not a failure verdict (which is allow for the system zone).
func TestInvalidRequests(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{}, loadBehave(t, rt, "allow", 'a'))
	e.Exist(ctx, proc1, "/bin/sh", abi.FSLocal)
	long := strings.Repeat("a", abi.MaxObject+1)
	for _, r := range []abi.DecideRequest{
		{Op: 0, Object: "/x"},
		{Op: 99, Object: "/x"},
		{Op: abi.OpFileRead, Object: "/x", FS: 9},
		{Op: abi.OpNetConnect, Proto: 99},
		{Op: abi.OpProcessExec, Object: long},
	} {
		if d, err := e.Decide(ctx, &Request{Subject: proc1, DecideRequest: r}); !errors.Is(err, abi.ErrMalformed) {
			t.Errorf("%+v: got %+v, %v; want an error wrapping abi.ErrMalformed", r, d, err)
		}
	}
}

func TestFailureVerdictDefaultsKept(t *testing.T) {
	cfg, err := Config{FailureVerdicts: map[string]abi.Verdict{"guarded": abi.Allow}}.withDefaults()
	if err != nil || cfg.FailureVerdicts["system"] != abi.Allow || cfg.FailureVerdicts["guarded"] != abi.Allow {
		t.Fatalf("%+v, %v: configuring one zone must keep the default for system", cfg.FailureVerdicts, err)
	}
}

// TestAncestryBounded: a process that forks and exits, or execs in place,
// in a loop must not make the host keep every ancestor.
func TestAncestryBounded(t *testing.T) {
	rt := newTestRuntime(t, testLimits)
	e := newTestEngine(t, Config{}, loadBehave(t, rt, "allow", 'a'))
	p := e.Exist(ctx, ProcessID{PID: 1, Start: 1}, "/bin/sh", abi.FSLocal)
	for i := 2; i < 5000; i++ {
		child, err := e.Fork(ProcessID{PID: uint32(i), Start: uint64(i)}, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		e.Exit(p.ID)
		if i%2 == 0 {
			if child, err = e.ExecInPlace(ctx, child.ID, "/bin/sh", abi.FSLocal); err != nil {
				t.Fatal(err)
			}
		}
		p = child
	}
	chain := p.Ancestry()
	if len(chain) > maxChain+1 || !chain[len(chain)-1].AncestryTruncated {
		t.Fatalf("ancestry of %d records (last truncated: %v), want at most %d ending in a truncated record",
			len(chain), chain[len(chain)-1].AncestryTruncated, maxChain+1)
	}
}

// TestBusyIsNotAFailure: waiting past the deadline for an instance gives
// the decision the failure verdict but does not count against the plugin.
func TestBusyIsNotAFailure(t *testing.T) {
	lim := testLimits
	lim.Instances, lim.CallDeadline = 1, 50*time.Millisecond
	p := loadBehave(t, newTestRuntime(t, lim), "allow", 'a')
	held, err := p.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var resp abi.DecideResponse
	err = p.Decide(ctx, &abi.DecideRequest{Op: abi.OpFileRead, Object: "/x"}, &resp)
	if !errors.Is(err, ErrPluginFailed) || !errors.Is(err, errBusy) || p.Info().Failures != 0 {
		t.Fatalf("got %v with %d failures; want a busy failure that is not counted", err, p.Info().Failures)
	}
	p.put(held)
	if err := p.Decide(ctx, &abi.DecideRequest{Op: abi.OpFileRead, Object: "/x"}, &resp); err != nil {
		t.Fatal(err)
	}
}

// containsAny reports whether s contains one of the |-separated words.
func containsAny(s, words string) bool {
	for _, w := range strings.Split(words, "|") {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func TestCacheDirMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := NewRuntime(ctx, RuntimeOptions{CacheDir: filepath.Join(open, "cache")}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("got %v, want a refusal of a world-writable parent", err)
	}
	rt, err := NewRuntime(ctx, RuntimeOptions{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	rt.Close(ctx)
}

// intern copies strings out of guest memory: what it returns must not
// change when the guest overwrites the bytes, and its table stays bounded.
func TestInternCopiesAndBounds(t *testing.T) {
	var inst instance
	mem := make([]byte, 2*maxInternedLen)
	alias := func(n int) string { return unsafe.String(&mem[0], n) }
	var got []string
	for i := 0; i < 3*maxInterned; i++ {
		copy(mem, fmt.Sprintf("reason %06d", i))
		got = append(got, inst.intern(alias(len("reason 000000"))))
	}
	copy(mem, "reason 000000") // the first string again: served from the table
	if s := inst.intern(alias(len("reason 000000"))); s != "reason 000000" {
		t.Fatalf("intern = %q", s)
	}
	for i := range mem {
		mem[i] = 'x'
	}
	for i, s := range got {
		if want := fmt.Sprintf("reason %06d", i); s != want {
			t.Fatalf("string %d changed with guest memory: %q, want %q", i, s, want)
		}
	}
	if len(inst.strs) != maxInterned {
		t.Fatalf("%d interned strings, want the bound %d", len(inst.strs), maxInterned)
	}
	var fresh instance
	if s := fresh.intern(alias(maxInternedLen + 1)); len(s) != maxInternedLen+1 || len(fresh.strs) != 0 {
		t.Fatalf("a long string was interned: %d entries", len(fresh.strs))
	}
}

// A closed session refuses calls instead of touching freed memory.
func TestSessionClosed(t *testing.T) {
	rt := newTestRuntime(t, Limits{})
	p := loadBehave(t, rt, "behave", 'a')
	s, err := p.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := abi.DecideRequest{Op: abi.OpFileRead, Zone: "z", Object: "/x"}
	buf := make([]byte, 256)
	n, _ := req.Encode(buf)
	if a, err := s.Call(ctx, abi.ExportDecide, buf[:n], uint32(n)); err != nil || a.RC <= 0 || a.Bytes == nil {
		t.Fatalf("%+v %v", a, err)
	}
	s.Close(ctx)
	s.Close(ctx)
	if _, err := s.Call(ctx, abi.ExportDecide, buf[:n], uint32(n)); !errors.Is(err, ErrSessionBroken) {
		t.Fatalf("call after Close: %v", err)
	}
	if s.MemoryBytes() != 0 || s.BufferSize() != 0 {
		t.Fatal("a closed session reports memory")
	}
}

// DecideCachedInto answers from the cache only: false on a miss, without
// calling a plugin; the same decision as DecideInto on a hit.
func TestDecideCachedInto(t *testing.T) {
	rt := newTestRuntime(t, Limits{})
	p := loadBehave(t, rt, "behave", 'a')
	e := newTestEngine(t, Config{}, p)
	e.Exist(ctx, proc1, "/usr/bin/bash", abi.FSLocal)
	req := writeReq("/tmp/x")
	var d Decision
	calls := p.Info().Calls
	misses := e.Stats().Cache.Misses
	if hit, err := e.DecideCachedInto(ctx, req, &d); err != nil || hit {
		t.Fatalf("before any decision: hit %v, %v", hit, err)
	}
	if p.Info().Calls != calls {
		t.Fatal("a cache-only decision called the plugin")
	}
	if e.Stats().Cache.Misses != misses {
		t.Fatal("a cache-only miss was counted: the full decision that follows counts it")
	}
	var full Decision
	if err := e.DecideInto(ctx, req, &full); err != nil {
		t.Fatal(err)
	}
	if hit, err := e.DecideCachedInto(ctx, req, &d); err != nil || !hit || !d.Cached || d.Verdict != full.Verdict || d.Rule != full.Rule {
		t.Fatalf("after: hit %v %v, %+v vs %+v", hit, err, d, full)
	}
}

// A process whose creator was lost is not classified by its executable
// (which would make /usr/bin/bash a system process, as for one found at
// start), and its children inherit the failure zone.
func TestUntracedUsesFailureZone(t *testing.T) {
	rt := newTestRuntime(t, Limits{CallDeadline: time.Second})
	zones, err := rt.Load(ctx, builtin.ZonesSource, builtin.Zones, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zones.Close(ctx) })
	e := newTestEngine(t, Config{}, zones)
	if p := e.Exist(ctx, proc1, "/usr/bin/bash", abi.FSLocal); p.Zone != "system" {
		t.Fatalf("Exist: %+v, want system (classified by its executable)", p)
	}
	id := ProcessID{PID: 2, Start: 2}
	p := e.Untraced(id, "/usr/bin/bash")
	if p.Zone != "untrusted" || !p.AncestryUnknown || p.Rule != "ancestry-lost" || e.Process(id) != p {
		t.Fatalf("Untraced: %+v", p)
	}
	d, err := e.Decide(ctx, &Request{Subject: id, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite, Object: "/etc/passwd"}})
	if err != nil || d.Verdict != abi.Deny || d.Zone != "untrusted" {
		t.Fatalf("write to system space: %+v, %v; want an untrusted deny", d, err)
	}
	child, err := e.Start(ctx, ProcessID{PID: 3, Start: 3}, id, "/usr/bin/python3", abi.FSLocal)
	if err != nil || child.Zone != "untrusted" {
		t.Fatalf("child: %+v, %v; want untrusted", child, err)
	}
}

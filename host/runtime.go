package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host/internal/wasmguard"
)

// Errors callers branch on.
var (
	// ErrPluginFailed wraps every failed plugin call: trap, deadline,
	// memory exhaustion, error code or malformed answer.
	ErrPluginFailed = errors.New("plugin call failed")
	// ErrQuarantined is returned instead of calling a plugin that failed
	// repeatedly, until its quarantine ends.
	ErrQuarantined = errors.New("plugin quarantined after repeated failures")
	// ErrBadPlugin wraps every reason to refuse loading a plugin.
	ErrBadPlugin = errors.New("invalid plugin")
)

// Limits bound what one plugin may cost. The zero value of a field means
// its default.
type Limits struct {
	// CallDeadline bounds one classify or decide call (default 20ms).
	CallDeadline time.Duration
	// InitDeadline bounds instantiation, the reactor initializer and
	// lineage_init together (default 5s).
	InitDeadline time.Duration
	// MemoryBytes caps each instance's linear memory (default 64 MiB).
	MemoryBytes uint64
	// Instances caps concurrent instances per plugin (default GOMAXPROCS).
	// Each concurrent caller gets its own; instances are never shared.
	Instances int
	// QuarantineAfter consecutive failures quarantine a plugin for
	// QuarantineFor (defaults 5 and 30s).
	QuarantineAfter int
	QuarantineFor   time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.CallDeadline <= 0 {
		l.CallDeadline = 20 * time.Millisecond
	}
	if l.InitDeadline <= 0 {
		l.InitDeadline = 5 * time.Second
	}
	if l.MemoryBytes == 0 {
		l.MemoryBytes = 64 << 20
	}
	if l.Instances <= 0 {
		l.Instances = runtime.GOMAXPROCS(0)
	}
	if l.QuarantineAfter <= 0 {
		l.QuarantineAfter = 5
	}
	if l.QuarantineFor <= 0 {
		l.QuarantineFor = 30 * time.Second
	}
	return l
}

const wasmPage = 64 << 10

var monoStart = time.Now()

// monoNow reads the monotonic clock, so that a wall-clock step cannot
// shorten or lengthen a quarantine.
func monoNow() int64 { return int64(time.Since(monoStart)) }

// Runtime compiles and runs plugins. One Runtime serves any number of
// plugins; it owns the WebAssembly engine and must be closed.
type Runtime struct {
	// creating counts instances being created in the background; Close
	// waits for them, since closing runs under a guest that still runs
	// would unmap its memory.
	creating sync.WaitGroup
	rt       wazero.Runtime
	wasi     map[string]bool // WASI function names
	limits   Limits
	log      hclog.Logger
}

// RuntimeOptions configure a Runtime.
type RuntimeOptions struct {
	Limits Limits
	// CacheDir, if set, keeps compiled machine code across processes, so a
	// command-line run does not recompile the same plugin.
	CacheDir string
	Logger   hclog.Logger
}

// NewRuntime returns a Runtime. Plugins get WASI with no files, no
// environment, no arguments, fake clocks and deterministic randomness: a
// plugin is a pure function and must not observe the machine.
func NewRuntime(ctx context.Context, o RuntimeOptions) (*Runtime, error) {
	lim := o.Limits.withDefaults()
	pages := lim.MemoryBytes / wasmPage
	if pages < 1 || pages > 65536 {
		return nil, fmt.Errorf("memory limit %d bytes: want 64 KiB to 4 GiB", lim.MemoryBytes)
	}
	cfg := wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(uint32(pages))
	if o.CacheDir != "" {
		if err := checkCacheDir(o.CacheDir); err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
		cc, err := wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache %s: %w", o.CacheDir, err)
		}
		cfg = cfg.WithCompilationCache(cc)
	}
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("instantiating WASI: %w", err)
	}
	wasi := map[string]bool{}
	for name := range rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions() {
		wasi[name] = true
	}
	return &Runtime{rt: rt, wasi: wasi, limits: lim, log: log}, nil
}

func parentDir(d string) string { return filepath.Dir(d) }

// DefaultCacheDir is where commands keep compiled plugins. NewRuntime
// refuses a cache folder, or a parent of it, that another user owns or
// that group or others may write (sticky folders such as /tmp excepted):
// the host runs the machine code it finds there.
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "lineage", "wazero")
}

// Close releases every plugin compiled by r.
// Close waits for instances still being created in the background (each
// bounded by the init deadline), then releases everything. Calls must
// have returned.
func (r *Runtime) Close(ctx context.Context) error {
	r.creating.Wait()
	return r.rt.Close(ctx)
}

// Plugin is a compiled, verified plugin with a pool of instances.
type Plugin struct {
	meta     abi.Metadata
	source   string
	sum      string
	config   []byte
	r        *Runtime
	compiled wazero.CompiledModule
	hadStart bool
	lim      Limits
	log      hclog.Logger

	idle   chan *instance
	slots  chan struct{} // one token per live instance
	closed atomic.Bool
	// creating counts this plugin's background instantiations (see
	// Runtime.creating); Close waits for them.
	creating sync.WaitGroup

	calls, failures atomic.Uint64
	consecutive     atomic.Int64
	quarantineUntil atomic.Int64 // monoNow nanoseconds
	lastErr         atomic.Pointer[string]
}

// PluginInfo describes a loaded plugin.
type PluginInfo struct {
	Metadata abi.Metadata
	Source   string // where it was loaded from
	SHA256   string // of the file as given, before instrumentation
	Calls    uint64
	Failures uint64
	// Quarantined is set while the plugin is skipped after repeated
	// failures.
	Quarantined bool
	LastError   string
}

// Load verifies, compiles and instantiates a plugin, and runs lineage_init
// with config. source names the plugin in errors and logs (a path, or
// "builtin:zones"). Every refusal wraps ErrBadPlugin and says what was
// wrong.
func (r *Runtime) Load(ctx context.Context, source string, wasm, config []byte) (*Plugin, error) {
	p, err := r.Compile(ctx, source, wasm, config)
	if err != nil {
		return nil, err
	}
	// Instantiate one instance now: a plugin whose initializer or
	// lineage_init fails is refused here, not at its first decision.
	p.slots <- struct{}{}
	inst, err := p.newInstance(ctx, p.config)
	if err != nil {
		p.compiled.Close(ctx)
		return nil, fmt.Errorf("%s: %w: %w", source, ErrBadPlugin, err)
	}
	p.idle <- inst
	return p, nil
}

// Static check names, in StaticError.Check.
const (
	CheckWasm     = "wasm"     // the file is a WebAssembly module the host can rewrite and compile
	CheckMetadata = "metadata" // the lineage.plugin section is present, valid and of a supported major version
	CheckImports  = "imports"  // only allowed WASI functions are imported
	CheckMemory   = "memory"   // the module defines and exports its memory, within the host's limit
	CheckExports  = "exports"  // the ABI's exports exist with the right signatures
)

// StaticError is one reason Compile refused a module, by check; Compile
// returns every one it found, joined (errors.As finds the first; use
// StaticErrors for all).
type StaticError struct {
	Check string
	Err   error
}

func (e *StaticError) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *StaticError) Unwrap() error { return e.Err }

// StaticErrors returns the StaticErrors inside err, from Compile or Load.
func StaticErrors(err error) []*StaticError {
	var out []*StaticError
	var walk func(error)
	walk = func(err error) {
		if se, ok := err.(*StaticError); ok {
			out = append(out, se)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// Compile checks and compiles a plugin without running any of its code:
// Load is Compile and a first instance. config is what lineage_init gets
// in every instance. Every refusal wraps ErrBadPlugin and one or more
// *StaticError naming the check that failed.
func (r *Runtime) Compile(ctx context.Context, source string, wasm, config []byte) (*Plugin, error) {
	bad := func(check string, err error) error {
		return fmt.Errorf("%s: %w: %w", source, ErrBadPlugin, &StaticError{check, err})
	}
	if len(wasm) == 0 {
		return nil, bad(CheckWasm, errors.New("file is empty"))
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, bad(CheckWasm, fmt.Errorf("not a WebAssembly module: starts with %q, want \"\\x00asm\"", wasm[:min(len(wasm), 4)]))
	}
	meta, err := abi.ReadMetadata(wasm)
	switch {
	case errors.Is(err, abi.ErrNoMetadata):
		return nil, bad(CheckMetadata, fmt.Errorf("no %s custom section: annotate the module after building it (see sdk/go)", abi.MetadataSection))
	case err != nil:
		return nil, bad(CheckMetadata, err)
	}
	if len(config) > abi.MaxConfig {
		return nil, fmt.Errorf("%s: %w: config of %d bytes exceeds the ABI limit of %d", source, ErrBadPlugin, len(config), abi.MaxConfig)
	}
	g, err := wasmguard.Instrument(wasm)
	if err != nil {
		return nil, bad(CheckWasm, err)
	}
	if limit := r.limits.MemoryBytes / wasmPage; g.MemoryPages > limit {
		return nil, bad(CheckMemory, fmt.Errorf("declares an initial memory of %d pages (%d MiB), over the host's limit of %d pages (%d MiB)",
			g.MemoryPages, g.MemoryPages>>4, limit, limit>>4))
	}
	compiled, err := r.rt.CompileModule(ctx, g.Wasm)
	if err != nil {
		return nil, bad(CheckWasm, fmt.Errorf("compiling: %v", err))
	}
	sum := sha256.Sum256(wasm)
	p := &Plugin{
		meta: meta, source: source, sum: hex.EncodeToString(sum[:]),
		config: append([]byte(nil), config...), r: r, compiled: compiled, hadStart: g.HadStart,
		lim: r.limits, log: r.log.Named("plugin").With("plugin", meta.Name),
		idle: make(chan *instance, r.limits.Instances), slots: make(chan struct{}, r.limits.Instances),
	}
	if errs := p.checkStatic(); len(errs) > 0 {
		compiled.Close(ctx)
		return nil, fmt.Errorf("%s: %w: %w", source, ErrBadPlugin, errors.Join(errs...))
	}
	return p, nil
}

// allowedImports are the WASI functions a plugin may import; wazero's
// implementations of them see no files, environment or real clocks.
func (r *Runtime) importAllowed(module, name string) bool {
	return module == wasi_snapshot_preview1.ModuleName && r.wasi[name]
}

func (p *Plugin) checkStatic() []error {
	var errs []error
	fail := func(check string, format string, a ...any) {
		errs = append(errs, &StaticError{check, fmt.Errorf(format, a...)})
	}
	var bad []string
	for _, f := range p.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		if !p.r.importAllowed(mod, name) {
			bad = append(bad, mod+"."+name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		fail(CheckImports, "imports not allowed (only %s functions are): %s", wasi_snapshot_preview1.ModuleName, strings.Join(bad, ", "))
	}
	for _, m := range p.compiled.ImportedMemories() {
		mod, name, _ := m.Import()
		fail(CheckMemory, "imports memory %s.%s; a plugin must define and export its own", mod, name)
	}
	if _, ok := p.compiled.ExportedMemories()[abi.ExportMemory]; !ok {
		fail(CheckMemory, "does not export its memory as %q", abi.ExportMemory)
	}
	want := []struct {
		name    string
		params  int
		need    bool
		purpose string
	}{
		{abi.ExportBuffer, 0, true, "I/O buffer address"},
		{abi.ExportBufferSize, 0, true, "I/O buffer size"},
		{abi.ExportInit, 1, true, "init"},
		{abi.ExportClassify, 1, p.meta.Entry&abi.EntryClassify != 0, "classify (declared in metadata)"},
		{abi.ExportDecide, 1, p.meta.Entry&abi.EntryDecide != 0, "decide (declared in metadata)"},
	}
	funcs := p.compiled.ExportedFunctions()
	for _, w := range want {
		f, ok := funcs[w.name]
		if !ok {
			if w.need {
				fail(CheckExports, "missing export %s (%s)", w.name, w.purpose)
			}
			continue
		}
		pt, rt := f.ParamTypes(), f.ResultTypes()
		okSig := len(pt) == w.params && len(rt) == 1 && rt[0] == api.ValueTypeI32
		for _, t := range pt {
			okSig = okSig && t == api.ValueTypeI32
		}
		if !okSig {
			fail(CheckExports, "export %s has signature (%s) -> (%s), want (%s) -> (i32)", w.name, typeList(pt), typeList(rt), strings.TrimSuffix(strings.Repeat("i32, ", w.params), ", "))
		}
	}
	if f, ok := funcs[abi.ExportInitialize]; ok && (len(f.ParamTypes()) != 0 || len(f.ResultTypes()) != 0) {
		fail(CheckExports, "export %s must take and return nothing", abi.ExportInitialize)
	}
	return errs
}

func typeList(ts []api.ValueType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = api.ValueTypeName(t)
	}
	return strings.Join(s, ", ")
}

// Metadata returns the plugin's metadata.
func (p *Plugin) Metadata() abi.Metadata { return p.meta }

// Name returns the plugin's metadata name.
func (p *Plugin) Name() string { return p.meta.Name }

// Info returns the plugin's description and counters.
func (p *Plugin) Info() PluginInfo {
	i := PluginInfo{
		Metadata: p.meta, Source: p.source, SHA256: p.sum,
		Calls: p.calls.Load(), Failures: p.failures.Load(),
		Quarantined: monoNow() < p.quarantineUntil.Load(),
	}
	if s := p.lastErr.Load(); s != nil {
		i.LastError = *s
	}
	return i
}

// Close releases the plugin's instances and compiled code. Calls must have
// returned; instances still being created in the background are closed
// when they finish.
func (p *Plugin) Close(ctx context.Context) error {
	p.closed.Store(true)
	p.creating.Wait() // each bounded by the init deadline
	for {
		select {
		case inst := <-p.idle:
			inst.close(ctx)
		default:
			return p.compiled.Close(ctx)
		}
	}
}

// instance is one instantiation of a plugin. It is used by one caller at a
// time and discarded after any failure, so a failing call can never leave
// state behind for the next one.
type instance struct {
	mod       api.Module
	mem       api.Memory
	buf, size uint32
	init      api.Function
	classify  api.Function
	decide    api.Function
	interrupt api.MutableGlobal
	timer     *time.Timer
	stack     []uint64
	strs      map[string]string // interned answer strings; see intern
}

// maxInterned and maxInternedLen bound an instance's interned strings (to
// 128 KiB). Rules, zones and most reasons repeat, so a few hundred cover
// them; strings that do not repeat (a reason naming a path) stop being
// added once the table is full.
const (
	maxInterned    = 512
	maxInternedLen = 256
)

// intern returns a copy of s, which aliases guest memory, that outlives
// the call: the same string for the same bytes, so answers that repeat
// cost no allocation. An instance serves one caller at a time, so its
// table needs no lock.
func (i *instance) intern(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := i.strs[s]; ok {
		return c
	}
	c := strings.Clone(s)
	if len(i.strs) < maxInterned && len(c) <= maxInternedLen {
		if i.strs == nil {
			i.strs = make(map[string]string)
		}
		i.strs[c] = c
	}
	return c
}

// InitError: lineage_init answered an error code, which is how a plugin
// refuses its config (a trap or a timeout is a *CallError instead).
type InitError struct {
	Code    abi.ErrorCode
	Message string
}

func (e *InitError) Error() string {
	return fmt.Sprintf("%s rejected the config: %s: %s", abi.ExportInit, e.Code, e.Message)
}

// CallError is a failed plugin call, classified for logs, counters and
// the conformance suite. It wraps ErrPluginFailed.
type CallError struct {
	What string // "deadline", "trap", "exit", "error code", "malformed answer", "instantiate"
	Err  error
}

func (e *CallError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *CallError) Unwrap() error { return ErrPluginFailed }

func (p *Plugin) newInstance(ctx context.Context, config []byte) (inst *instance, err error) {
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdout(&logWriter{log: p.log, stream: "stdout"}).WithStderr(&logWriter{log: p.log, stream: "stderr"})
	mod, err := p.instantiate(ctx, mc)
	if err != nil {
		return nil, fmt.Errorf("instantiating: %v", err)
	}
	inst = &instance{mod: mod, mem: mod.Memory(), stack: make([]uint64, 1)}
	defer func() {
		if err != nil {
			mod.Close(ctx)
		}
	}()
	g, ok := mod.ExportedGlobal(wasmguard.InterruptExport).(api.MutableGlobal)
	if !ok {
		return nil, errors.New("instrumentation global missing")
	}
	inst.interrupt = g
	inst.timer = time.AfterFunc(time.Hour, func() { g.Set(1) })
	inst.timer.Stop()
	inst.init = mod.ExportedFunction(abi.ExportInit)
	inst.classify = mod.ExportedFunction(abi.ExportClassify)
	inst.decide = mod.ExportedFunction(abi.ExportDecide)

	// One budget covers the whole start-up; a start function or an
	// initializer that never returns is interrupted like any call.
	start := time.Now()
	left := func() time.Duration { return p.lim.InitDeadline - time.Since(start) }
	if p.hadStart {
		if err := callErr(inst.call(ctx, mod.ExportedFunction(wasmguard.StartExport), nil, left())); err != nil {
			return nil, fmt.Errorf("start function: %w", err)
		}
	}
	if f := mod.ExportedFunction(abi.ExportInitialize); f != nil {
		if err := callErr(inst.call(ctx, f, nil, left())); err != nil {
			return nil, fmt.Errorf("%s: %w", abi.ExportInitialize, err)
		}
	}
	ptr, err := inst.call(ctx, mod.ExportedFunction(abi.ExportBuffer), nil, left())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportBuffer, err)
	}
	size, err := inst.call(ctx, mod.ExportedFunction(abi.ExportBufferSize), nil, left())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportBufferSize, err)
	}
	inst.buf, inst.size = uint32(ptr), uint32(size)
	if inst.size < abi.MinBufferSize {
		return nil, fmt.Errorf("I/O buffer of %d bytes; the ABI requires at least %d", inst.size, abi.MinBufferSize)
	}
	if uint64(inst.buf)+uint64(inst.size) > uint64(inst.mem.Size()) {
		return nil, fmt.Errorf("I/O buffer [%#x, +%d) lies outside memory of %d bytes", inst.buf, inst.size, inst.mem.Size())
	}
	view, _ := inst.mem.Read(inst.buf, uint32(len(config)))
	copy(view, config)
	n := uint64(len(config))
	rc, err := inst.call(ctx, inst.init, &n, left())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportInit, err)
	}
	if rc < 0 {
		return nil, &InitError{Code: abi.ErrorCode(-rc), Message: inst.errorMessage()}
	}
	if rc != 0 {
		return nil, fmt.Errorf("%s returned %d, want 0 or a negative error code", abi.ExportInit, rc)
	}
	return inst, nil
}

// instantiate instantiates the compiled module, turning a panic in the
// runtime (a module it cannot set up) into an error: a plugin must never
// take the host down, least of all from a background goroutine.
func (p *Plugin) instantiate(ctx context.Context, mc wazero.ModuleConfig) (mod api.Module, err error) {
	defer func() {
		if r := recover(); r != nil {
			mod, err = nil, fmt.Errorf("the runtime failed to set the module up: %v", r)
		}
	}()
	return p.r.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, memoryAllocator()), p.compiled, mc)
}

// call runs fn with at most one i32 argument under a deadline. The result
// is the i32 the guest returned, if fn returns one.
func (i *instance) call(ctx context.Context, fn api.Function, arg *uint64, d time.Duration) (int32, error) {
	if d <= 0 {
		return 0, &CallError{"deadline", errors.New("no time left")}
	}
	if arg != nil {
		i.stack[0] = *arg
	}
	i.timer.Reset(d)
	err := fn.CallWithStack(ctx, i.stack)
	if !i.timer.Stop() {
		// The interrupt fired: whatever the call returned, the
		// instance's interrupt flag is set and it is unusable.
		return 0, &CallError{"deadline", fmt.Errorf("exceeded %v", d)}
	}
	if err != nil {
		return 0, classifyTrap(err)
	}
	return int32(uint32(i.stack[0])), nil
}

func callErr(_ int32, err error) error { return err }

func classifyTrap(err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return &CallError{"exit", fmt.Errorf("guest exited with code %d (a Go plugin exits 2 when it runs out of memory or panics outside the SDK)", exit.ExitCode())}
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i] // drop wazero's guest stack trace
	}
	return &CallError{"trap", errors.New(msg)}
}

func (i *instance) errorMessage() string {
	b, ok := i.mem.Read(i.buf, 4+abi.MaxError)
	if !ok {
		return ""
	}
	return abi.ReadErrorMessage(b)
}

func (i *instance) close(ctx context.Context) {
	i.timer.Stop()
	i.mod.Close(ctx)
}

// errBusy: every instance stayed busy for a whole call deadline. The
// decision gets the failure verdict, but the plugin did nothing wrong, so
// it does not count towards quarantine.
var errBusy = errors.New("no instance free within the call deadline")

// get returns an idle instance, waiting at most the call deadline. It never
// instantiates on the decision path: instantiation runs the guest's
// initializer under the much longer init deadline, so it happens in the
// background (grow) and the caller takes whichever instance frees first.
func (p *Plugin) get(ctx context.Context) (*instance, error) {
	select {
	case inst := <-p.idle:
		return inst, nil
	default:
	}
	p.grow()
	t := time.NewTimer(p.lim.CallDeadline)
	defer t.Stop()
	select {
	case inst := <-p.idle:
		return inst, nil
	case <-t.C:
		return nil, errBusy
	case <-ctx.Done():
		return nil, &CallError{"canceled", ctx.Err()}
	}
}

// grow starts one background instantiation if the plugin is below its
// instance cap.
func (p *Plugin) grow() {
	if p.closed.Load() {
		return
	}
	select {
	case p.slots <- struct{}{}:
		p.creating.Add(1)
		p.r.creating.Add(1)
		go p.create()
	default:
	}
}

func (p *Plugin) create() {
	defer p.r.creating.Done()
	defer p.creating.Done()
	inst, err := p.newInstance(context.Background(), p.config)
	if err != nil {
		<-p.slots
		p.failed(&CallError{"instantiate", err})
		return
	}
	if p.closed.Load() {
		p.discardQuiet(inst)
		return
	}
	p.idle <- inst // never blocks: slots bound the instances
}

func (p *Plugin) put(inst *instance) { p.idle <- inst }

// discard closes a failed instance and starts a replacement in the
// background, so the next decision finds one ready.
func (p *Plugin) discard(ctx context.Context, inst *instance) {
	p.discardQuiet(inst)
	p.grow()
}

func (p *Plugin) discardQuiet(inst *instance) {
	inst.close(context.Background())
	<-p.slots
}

// invoke encodes a request into an instance's buffer, calls fn and hands
// the answer bytes to decode. Any failure discards the instance.
func (p *Plugin) invoke(ctx context.Context, which func(*instance) api.Function, encode func([]byte) (int, error), decode func(*instance, []byte) error) error {
	if until := p.quarantineUntil.Load(); until != 0 && monoNow() < until {
		return fmt.Errorf("%s: %w", p.meta.Name, ErrQuarantined)
	}
	p.calls.Add(1)
	inst, err := p.get(ctx)
	if errors.Is(err, errBusy) {
		return fmt.Errorf("%s: %w: %w", p.meta.Name, ErrPluginFailed, err)
	}
	if err != nil {
		return p.failed(err)
	}
	view, _ := inst.mem.Read(inst.buf, inst.size)
	n, err := encode(view)
	if err != nil {
		// The host built a request it cannot encode: not the plugin's
		// fault, and the instance is untouched.
		p.put(inst)
		return err
	}
	arg := uint64(n)
	rc, err := inst.call(ctx, which(inst), &arg, p.lim.CallDeadline)
	if err != nil {
		p.discard(ctx, inst)
		return p.failed(err)
	}
	if rc < 0 {
		msg := inst.errorMessage()
		p.discard(ctx, inst)
		return p.failed(&CallError{"error code", fmt.Errorf("%s: %s", abi.ErrorCode(-rc), msg)})
	}
	if uint32(rc) > inst.size {
		p.discard(ctx, inst)
		return p.failed(&CallError{"malformed answer", fmt.Errorf("answer length %d exceeds the %d-byte buffer", rc, inst.size)})
	}
	// The guest may have grown (and so moved) its memory: read again.
	view, ok := inst.mem.Read(inst.buf, uint32(rc))
	if !ok {
		p.discard(ctx, inst)
		return p.failed(&CallError{"malformed answer", errors.New("buffer no longer inside memory")})
	}
	if err := decode(inst, view); err != nil {
		p.discard(ctx, inst)
		return p.failed(&CallError{"malformed answer", err})
	}
	p.put(inst)
	p.consecutive.Store(0)
	return nil
}

func (p *Plugin) failed(err error) error {
	p.failures.Add(1)
	s := err.Error()
	p.lastErr.Store(&s)
	if n := p.consecutive.Add(1); n >= int64(p.lim.QuarantineAfter) {
		p.quarantineUntil.Store(monoNow() + int64(p.lim.QuarantineFor))
		p.consecutive.Store(0)
		p.log.Error("plugin quarantined", "failures", n, "for", p.lim.QuarantineFor, "error", s)
	} else if p.log.IsDebug() {
		p.log.Debug("plugin call failed", "error", s)
	}
	return fmt.Errorf("%s: %w", p.meta.Name, err)
}

// Decide calls the plugin's decide entry point. The answer's strings are
// copied out of guest memory.
func (p *Plugin) Decide(ctx context.Context, req *abi.DecideRequest, resp *abi.DecideResponse) error {
	return p.invoke(ctx, func(i *instance) api.Function { return i.decide }, req.Encode, func(i *instance, b []byte) error {
		if err := resp.DecodeAlias(b, req.Op); err != nil {
			*resp = abi.DecideResponse{} // no strings into a discarded instance
			return err
		}
		resp.Rule, resp.Reason = i.intern(resp.Rule), i.intern(resp.Reason)
		return resp.CheckScope(req)
	})
}

// Classify calls the plugin's classify entry point.
func (p *Plugin) Classify(ctx context.Context, req *abi.ClassifyRequest, resp *abi.ClassifyResponse) error {
	return p.invoke(ctx, func(i *instance) api.Function { return i.classify }, req.Encode, func(i *instance, b []byte) error {
		if err := resp.DecodeAlias(b); err != nil {
			*resp = abi.ClassifyResponse{}
			return err
		}
		resp.Zone, resp.State = i.intern(resp.Zone), i.intern(resp.State)
		resp.Rule, resp.Reason = i.intern(resp.Rule), i.intern(resp.Reason)
		return nil
	})
}

// logWriter forwards a plugin's stdout and stderr to the log, bounded so a
// chatty plugin cannot flood it.
type logWriter struct {
	log    hclog.Logger
	stream string
	mu     sync.Mutex
	n      int
}

const maxPluginOutput = 64 << 10

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= maxPluginOutput {
		return len(b), nil
	}
	w.n += len(b)
	msg := strings.TrimRight(string(b[:min(len(b), 1024)]), "\n")
	w.log.Debug("plugin output", "stream", w.stream, "text", msg)
	if w.n >= maxPluginOutput {
		w.log.Warn("plugin output limit reached; further output dropped", "stream", w.stream)
	}
	return len(b), nil
}

var _ io.Writer = (*logWriter)(nil)

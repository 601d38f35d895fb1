// Package lineage is the Go SDK for Lineage policy plugins. A plugin is an
// ordinary Go main package that registers its implementation from an init
// function and is built with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// then annotated with its metadata (see cmd/lineage-annotate). The SDK owns
// the ABI (lineage.dev/lineage/abi): it exports the entry points, decodes
// requests into typed values, calls the plugin and encodes the answer. It
// depends only on the abi package.
package lineage

import (
	"errors"
	"fmt"

	"lineage.dev/lineage/abi"
)

// Typed requests and responses; see the abi package for their fields.
type (
	ClassifyRequest  = abi.ClassifyRequest
	ClassifyResponse = abi.ClassifyResponse
	DecideRequest    = abi.DecideRequest
	DecideResponse   = abi.DecideResponse
	Scope            = abi.Scope
	Verdict          = abi.Verdict
	Op               = abi.Op
)

// Verdicts.
const (
	Abstain = abi.Abstain
	Allow   = abi.Allow
	Deny    = abi.Deny
)

// Ops.
const (
	OpProcessExec   = abi.OpProcessExec
	OpCodeLoad      = abi.OpCodeLoad
	OpFileRead      = abi.OpFileRead
	OpFileWrite     = abi.OpFileWrite
	OpFileDelete    = abi.OpFileDelete
	OpRegistryRead  = abi.OpRegistryRead
	OpRegistryWrite = abi.OpRegistryWrite
	OpNetConnect    = abi.OpNetConnect
	OpNetBind       = abi.OpNetBind
	OpNetSend       = abi.OpNetSend
	OpMemRead       = abi.OpMemRead
	OpMemWrite      = abi.OpMemWrite
)

// Scope dimensions: which subjects and which objects an answer also holds
// for. Claim the widest scope that is true; the host caches at that scope.
const (
	SubjectZoneState = abi.SubjectZoneState
	SubjectZone      = abi.SubjectZone
	SubjectAll       = abi.SubjectAll
	ObjectExact      = abi.ObjectExact
	ObjectPrefix     = abi.ObjectPrefix
	ObjectPortRange  = abi.ObjectPortRange
	ObjectAny        = abi.ObjectAny
)

// Initializer is implemented by plugins that take config bytes. Init runs
// once per instance before any other call; an error makes the host refuse
// the plugin and is shown to the administrator, so name the bad key.
type Initializer interface {
	Init(config []byte) error
}

// Classifier is implemented by plugins that assign zones to processes.
// Classify must be a pure function of its request.
type Classifier interface {
	Classify(req *ClassifyRequest) (ClassifyResponse, error)
}

// Decider is implemented by plugins that answer access requests. Decide
// must be a pure function of its request, and the scope it returns must be
// truthful: every request inside the scope gets the same answer.
type Decider interface {
	Decide(req *DecideRequest) (DecideResponse, error)
}

var registered any

// Register installs the plugin implementation. Call it from an init
// function of the main package: in a WASI reactor main never runs. p must
// implement Classifier, Decider or both, and may implement Initializer.
func Register(p any) {
	_, c := p.(Classifier)
	_, d := p.(Decider)
	if !c && !d {
		panic("lineage: Register: plugin implements neither Classifier nor Decider")
	}
	registered = p
}

// Dispatcher runs the ABI side of a plugin over an I/O buffer: it decodes
// requests, calls the plugin and encodes answers or errors. The wasm
// exports use one over the exported buffer; tests use one over a slice.
//
// Request strings alias the buffer: they are valid until the plugin's
// function returns (copy one with strings.Clone to keep it). Answers are
// encoded into a scratch buffer first, so an answer may safely contain
// request strings.
type Dispatcher struct {
	Plugin any

	// Set by Init from Plugin: the hot path makes no type assertion.
	ready      bool
	classifier Classifier
	decider    Decider

	dreq    abi.DecideRequest
	creq    abi.ClassifyRequest
	scratch []byte
}

// reply copies an answer of m bytes, encoded into the scratch buffer, to
// buf; err is the encoder's.
func reply(buf, scratch []byte, m int, err error) int32 {
	if err != nil {
		return fail(buf, abi.ErrCodeInternal, "encoding the answer: "+err.Error())
	}
	if m > len(buf) {
		return fail(buf, abi.ErrCodeInternal, fmt.Sprintf("answer of %d bytes exceeds the %d-byte buffer", m, len(buf)))
	}
	return int32(copy(buf, scratch[:m]))
}

// Init handles lineage_init: buf[:n] holds the config bytes.
func (d *Dispatcher) Init(buf []byte, n uint32) (rc int32) {
	defer d.recover(buf, &rc)
	if d.Plugin == nil {
		return fail(buf, abi.ErrCodeInternal, "no plugin registered: call lineage.Register from an init function")
	}
	if int(n) > len(buf) || n > abi.MaxConfig {
		return fail(buf, abi.ErrCodeConfig, fmt.Sprintf("config of %d bytes exceeds the buffer", n))
	}
	if i, ok := d.Plugin.(Initializer); ok {
		// Copy: the buffer is overwritten by the next request.
		cfg := append([]byte(nil), buf[:n]...)
		if err := i.Init(cfg); err != nil {
			return fail(buf, abi.ErrCodeConfig, err.Error())
		}
	}
	// Allocate the answer buffer now, not during the first decision.
	if d.scratch == nil {
		d.scratch = make([]byte, abi.MaxMessage)
	}
	d.classifier, _ = d.Plugin.(Classifier)
	d.decider, _ = d.Plugin.(Decider)
	d.ready = true
	return 0
}

// Classify handles lineage_classify: buf[:n] holds the request.
func (d *Dispatcher) Classify(buf []byte, n uint32) (rc int32) {
	defer d.recover(buf, &rc)
	c := d.classifier
	switch {
	case !d.ready:
		return fail(buf, abi.ErrCodeNotInitialized, "lineage_classify called before lineage_init succeeded")
	case c == nil:
		return fail(buf, abi.ErrCodeUnsupported, "this plugin does not classify")
	case int(n) > len(buf):
		return fail(buf, abi.ErrCodeMalformed, fmt.Sprintf("request length %d exceeds the buffer", n))
	}
	if err := d.creq.DecodeAlias(buf[:n]); err != nil {
		return failDecode(buf, err)
	}
	resp, err := c.Classify(&d.creq)
	if err != nil {
		return fail(buf, abi.ErrCodeInternal, err.Error())
	}
	m, err := resp.Encode(d.scratch)
	return reply(buf, d.scratch, m, err)
}

// Decide handles lineage_decide: buf[:n] holds the request.
func (d *Dispatcher) Decide(buf []byte, n uint32) (rc int32) {
	defer d.recover(buf, &rc)
	c := d.decider
	switch {
	case !d.ready:
		return fail(buf, abi.ErrCodeNotInitialized, "lineage_decide called before lineage_init succeeded")
	case c == nil:
		return fail(buf, abi.ErrCodeUnsupported, "this plugin does not decide")
	case int(n) > len(buf):
		return fail(buf, abi.ErrCodeMalformed, fmt.Sprintf("request length %d exceeds the buffer", n))
	}
	if err := d.dreq.DecodeAlias(buf[:n]); err != nil {
		return failDecode(buf, err)
	}
	resp, err := c.Decide(&d.dreq)
	if err != nil {
		return fail(buf, abi.ErrCodeInternal, err.Error())
	}
	// The answer must hold its own request: checking here reports the
	// plugin bug by name ("answer: ... prefix_len ...") instead of leaving
	// the host to find a malformed answer. Either way the decision gets the
	// failure verdict and the failure counts towards quarantine.
	if err := resp.CheckScope(&d.dreq); err != nil {
		return fail(buf, abi.ErrCodeInternal, "answer: "+err.Error())
	}
	m, err := resp.Encode(d.scratch, d.dreq.Op)
	return reply(buf, d.scratch, m, err)
}

// recover turns a panic in plugin code into an internal error answer with
// the panic's message, instead of a guest exit with none. The host treats
// it like any failed call: failure verdict, instance discarded.
func (d *Dispatcher) recover(buf []byte, rc *int32) {
	if r := recover(); r != nil {
		*rc = fail(buf, abi.ErrCodeInternal, fmt.Sprintf("panic: %v", r))
	}
}

func failDecode(buf []byte, err error) int32 {
	if errors.Is(err, abi.ErrVersion) {
		return fail(buf, abi.ErrCodeVersion, err.Error())
	}
	return fail(buf, abi.ErrCodeMalformed, err.Error())
}

func fail(buf []byte, code abi.ErrorCode, msg string) int32 {
	abi.ErrorMessage(buf, msg)
	return -int32(code)
}

package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"lineage.dev/lineage/abi"
)

// Session is one instance of a plugin, owned by its caller, that takes raw
// request bytes and returns raw answers: the conformance suite uses it to
// exercise a plugin at the ABI level (malformed requests included) and to
// watch one instance over many calls. Decisions never go through a
// Session. It is not safe for concurrent use.
//
// Every call runs under the plugin's call deadline with the same
// containment as a decision: a trap, an exit or a deadline ends the
// session (its instance may be in any state), and later calls return
// ErrSessionBroken.
type Session struct {
	p        *Plugin
	inst     *instance
	broken   error
	InitTime time.Duration // instantiation, initializers and lineage_init
}

// ErrSessionBroken is returned by calls after one that failed, or after
// Close.
var ErrSessionBroken = errors.New("session ended by an earlier failed call")

var errSessionClosed = errors.New("the session was closed")

// NewSession instantiates the plugin with config (the plugin's own config
// when nil) and runs its initializers and lineage_init under the init
// deadline. When lineage_init answers an error code the error is an
// *InitError; when a call traps, exits or overruns, it wraps a *CallError.
func (p *Plugin) NewSession(ctx context.Context, config []byte) (*Session, error) {
	if config == nil {
		config = p.config
	}
	if len(config) > abi.MaxConfig {
		return nil, fmt.Errorf("config of %d bytes exceeds the ABI limit of %d", len(config), abi.MaxConfig)
	}
	start := time.Now()
	inst, err := p.newInstance(ctx, config)
	if err != nil {
		return nil, err
	}
	return &Session{p: p, inst: inst, InitTime: time.Since(start)}, nil
}

// Answer is what one raw call returned.
type Answer struct {
	// RC is the export's return value: the answer's length, or a
	// negative abi.ErrorCode.
	RC int32
	// Bytes is a copy of the answer (RC bytes of the buffer) when RC >= 0
	// and within the buffer, non-nil even when empty; nil otherwise.
	Bytes []byte
	// Message is the error message when RC < 0.
	Message string
	// Elapsed is the call's wall time.
	Elapsed time.Duration
}

// Call writes req into the plugin's buffer and calls export (one of
// abi.ExportClassify, abi.ExportDecide, abi.ExportInit) with length n,
// which may differ from len(req) to test how the plugin handles a length
// that lies. req longer than the buffer is refused without a call.
func (s *Session) Call(ctx context.Context, export string, req []byte, n uint32) (Answer, error) {
	if s.broken != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrSessionBroken, s.broken)
	}
	inst := s.inst
	fn := inst.mod.ExportedFunction(export)
	if fn == nil {
		return Answer{}, fmt.Errorf("the plugin does not export %s", export)
	}
	if uint64(len(req)) > uint64(inst.size) {
		return Answer{}, fmt.Errorf("request of %d bytes exceeds the plugin's %d-byte buffer", len(req), inst.size)
	}
	view, ok := inst.mem.Read(inst.buf, uint32(len(req)))
	if !ok {
		return Answer{}, errors.New("the plugin's buffer is no longer inside its memory")
	}
	copy(view, req)
	arg := uint64(n)
	start := time.Now()
	rc, err := inst.call(ctx, fn, &arg, s.p.lim.CallDeadline)
	a := Answer{RC: rc, Elapsed: time.Since(start)}
	if err != nil {
		s.broken = err
		return a, err
	}
	if rc < 0 {
		a.Message = inst.errorMessage()
		return a, nil
	}
	if b, ok := inst.mem.Read(inst.buf, uint32(rc)); ok && uint32(rc) <= inst.size {
		a.Bytes = append(make([]byte, 0, len(b)), b...) // non-nil, even when empty
	}
	return a, nil
}

// MemoryBytes is the instance's current linear memory size (0 once
// closed).
func (s *Session) MemoryBytes() uint32 {
	if s.inst == nil {
		return 0
	}
	return s.inst.mem.Size()
}

// BufferSize is the size of the plugin's I/O buffer.
func (s *Session) BufferSize() uint32 {
	if s.inst == nil {
		return 0
	}
	return s.inst.size
}

// Close releases the instance; later calls return ErrSessionBroken.
func (s *Session) Close(ctx context.Context) {
	if s.inst != nil {
		s.inst.close(ctx)
		s.inst = nil
		s.broken = errSessionClosed
	}
}

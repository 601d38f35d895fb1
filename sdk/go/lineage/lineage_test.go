package lineage_test

import (
	"errors"
	"strings"
	"testing"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/sdk/go/lineage"
)

// fake is a plugin whose behaviour each test sets. It implements every
// interface; the wrappers below hide some of them.
type fake struct {
	config   []byte
	initErr  error
	classify func(*lineage.ClassifyRequest) (lineage.ClassifyResponse, error)
	decide   func(*lineage.DecideRequest) (lineage.DecideResponse, error)
}

func (f *fake) Init(config []byte) error {
	f.config = config
	return f.initErr
}

func (f *fake) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return f.classify(r)
}

func (f *fake) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	return f.decide(r)
}

// decideOnly and classifyOnly expose one entry point and no Init.
type decideOnly struct{ f *fake }

func (d decideOnly) Decide(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
	return d.f.decide(r)
}

type classifyOnly struct{ f *fake }

func (c classifyOnly) Classify(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
	return c.f.classify(r)
}

var (
	okDecide = func(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
		return lineage.DecideResponse{Verdict: lineage.Allow, Scope: lineage.Scope{TTLMillis: 1000}, Rule: "ok"}, nil
	}
	okClassify = func(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
		return lineage.ClassifyResponse{Classified: true, Zone: "user", Rule: "ok"}, nil
	}
	fileRead  = abi.DecideRequest{Op: abi.OpFileRead, Zone: "user", State: "s", Object: "/etc/passwd"}
	execShell = abi.ClassifyRequest{Exe: "/bin/sh", CreatorZone: "user", CreatorExe: "/usr/bin/bash"}
)

// host plays the host's side over a plain buffer.
type host struct {
	t   *testing.T
	d   *lineage.Dispatcher
	buf []byte
}

func newHost(t *testing.T, plugin any) *host {
	return &host{t: t, d: &lineage.Dispatcher{Plugin: plugin}, buf: make([]byte, abi.MinBufferSize)}
}

func (h *host) init(config string) int32 {
	n := copy(h.buf, config)
	return h.d.Init(h.buf, uint32(n))
}

func (h *host) mustInit() {
	h.t.Helper()
	if rc := h.init(""); rc != 0 {
		h.t.Fatalf("Init = %d: %s", rc, abi.ReadErrorMessage(h.buf))
	}
}

func (h *host) decide(r *abi.DecideRequest) int32 {
	h.t.Helper()
	n, err := r.Encode(h.buf)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.d.Decide(h.buf, uint32(n))
}

func (h *host) classify(r *abi.ClassifyRequest) int32 {
	h.t.Helper()
	n, err := r.Encode(h.buf)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.d.Classify(h.buf, uint32(n))
}

// wantError checks that rc is the negated code and that the buffer holds
// an error message containing text.
func (h *host) wantError(rc int32, code abi.ErrorCode, text string) {
	h.t.Helper()
	if rc != -int32(code) {
		h.t.Fatalf("rc = %d (%s), want %d (%s); message %q", rc, abi.ErrorCode(-rc), -int32(code), code, abi.ReadErrorMessage(h.buf))
	}
	if msg := abi.ReadErrorMessage(h.buf); !strings.Contains(msg, text) {
		h.t.Errorf("error message %q does not contain %q", msg, text)
	}
}

func TestInit(t *testing.T) {
	tests := []struct {
		name    string
		plugin  func(f *fake) any
		initErr error
		config  string
		code    abi.ErrorCode // 0: success
		text    string
	}{
		{"ok with config", func(f *fake) any { return f }, nil, `{"protected":["/srv/"]}`, 0, ""},
		{"ok empty config", func(f *fake) any { return f }, nil, "", 0, ""},
		{"ok without Initializer", func(f *fake) any { return decideOnly{f} }, nil, "ignored", 0, ""},
		{"config rejected", func(f *fake) any { return f }, errors.New(`config: unknown key "protectd"`), `{"protectd":[]}`, abi.ErrCodeConfig, `unknown key "protectd"`},
		{"no plugin", func(f *fake) any { return nil }, nil, "", abi.ErrCodeInternal, "lineage.Register"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{initErr: tt.initErr, decide: okDecide}
			h := newHost(t, tt.plugin(f))
			rc := h.init(tt.config)
			if tt.code != 0 {
				h.wantError(rc, tt.code, tt.text)
				// A failed init leaves the plugin unusable.
				h.wantError(h.decide(&fileRead), abi.ErrCodeNotInitialized, "before lineage_init")
				return
			}
			if rc != 0 {
				t.Fatalf("Init = %d: %s", rc, abi.ReadErrorMessage(h.buf))
			}
			if _, ok := tt.plugin(f).(lineage.Initializer); ok && string(f.config) != tt.config {
				t.Errorf("plugin got config %q, want %q", f.config, tt.config)
			}
		})
	}
}

func TestInitCopiesConfig(t *testing.T) {
	f := &fake{decide: okDecide}
	h := newHost(t, f)
	if rc := h.init("config-bytes"); rc != 0 {
		t.Fatal(rc)
	}
	h.decide(&fileRead) // the buffer now holds a request and an answer
	if string(f.config) != "config-bytes" {
		t.Errorf("config the plugin kept was overwritten: %q", f.config)
	}
}

func TestInitConfigTooLong(t *testing.T) {
	for _, tt := range []struct {
		name string
		buf  int
		n    uint32
	}{
		{"longer than the buffer", 100, 101},
		{"longer than MaxConfig", abi.MaxConfig + 10, abi.MaxConfig + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, &fake{})
			h.buf = make([]byte, tt.buf)
			h.wantError(h.d.Init(h.buf, tt.n), abi.ErrCodeConfig, "exceeds")
		})
	}
}

func TestErrors(t *testing.T) {
	malformed := func(h *host) int32 {
		n, _ := fileRead.Encode(h.buf)
		h.buf[4]++ // total_size no longer matches the length
		return h.d.Decide(h.buf, uint32(n))
	}
	tests := []struct {
		name   string
		plugin func(f *fake) any
		init   bool
		call   func(h *host) int32
		code   abi.ErrorCode
		text   string
	}{
		{"decide before init", func(f *fake) any { return f }, false, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeNotInitialized, "lineage_decide called before lineage_init"},
		{"classify before init", func(f *fake) any { return f }, false, func(h *host) int32 { return h.classify(&execShell) }, abi.ErrCodeNotInitialized, "lineage_classify called before lineage_init"},
		{"classify on a decide-only plugin", func(f *fake) any { return decideOnly{f} }, true, func(h *host) int32 { return h.classify(&execShell) }, abi.ErrCodeUnsupported, "does not classify"},
		{"decide on a classify-only plugin", func(f *fake) any { return classifyOnly{f} }, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeUnsupported, "does not decide"},
		{"malformed decide request", func(f *fake) any { return f }, true, malformed, abi.ErrCodeMalformed, "field total_size"},
		{"empty classify request", func(f *fake) any { return f }, true, func(h *host) int32 { return h.d.Classify(h.buf, 0) }, abi.ErrCodeMalformed, "field length"},
		{"request longer than the buffer", func(f *fake) any { return f }, true, func(h *host) int32 { return h.d.Decide(h.buf, uint32(len(h.buf)+1)) }, abi.ErrCodeMalformed, "exceeds the buffer"},
		{"classify request with bad flags", func(f *fake) any { return f }, true, func(h *host) int32 {
			n, _ := execShell.Encode(h.buf)
			h.buf[16] = 0x80
			return h.d.Classify(h.buf, uint32(n))
		}, abi.ErrCodeMalformed, "flags"},
		{"decide request with a wrong major", func(f *fake) any { return f }, true, func(h *host) int32 {
			n, _ := fileRead.Encode(h.buf)
			h.buf[8] = 2
			return h.d.Decide(h.buf, uint32(n))
		}, abi.ErrCodeVersion, "major version 2"},
		{"classify request with a wrong major", func(f *fake) any { return f }, true, func(h *host) int32 {
			n, _ := execShell.Encode(h.buf)
			h.buf[8], h.buf[9] = 0, 1 // 256
			return h.d.Classify(h.buf, uint32(n))
		}, abi.ErrCodeVersion, "major version 256"},
		{"decide panics", func(f *fake) any {
			f.decide = func(*lineage.DecideRequest) (lineage.DecideResponse, error) { panic("index out of range [3]") }
			return f
		}, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeInternal, "panic: index out of range [3]"},
		{"classify panics", func(f *fake) any {
			f.classify = func(*lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
				var m map[string]int
				m["x"] = 1 // a runtime error, not a string
				return lineage.ClassifyResponse{}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.classify(&execShell) }, abi.ErrCodeInternal, "panic"},
		{"decide returns an error", func(f *fake) any {
			f.decide = func(*lineage.DecideRequest) (lineage.DecideResponse, error) {
				return lineage.DecideResponse{}, errors.New("rules table empty")
			}
			return f
		}, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeInternal, "rules table empty"},
		{"decide answers a bad verdict", func(f *fake) any {
			f.decide = func(*lineage.DecideRequest) (lineage.DecideResponse, error) {
				return lineage.DecideResponse{Verdict: 7}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeInternal, "field verdict"},
		{"decide answers a reason too long", func(f *fake) any {
			f.decide = func(*lineage.DecideRequest) (lineage.DecideResponse, error) {
				return lineage.DecideResponse{Verdict: lineage.Deny, Reason: strings.Repeat("x", abi.MaxReason+1)}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeInternal, "field reason"},
		{"decide answers a prefix scope without a length", func(f *fake) any {
			f.decide = func(*lineage.DecideRequest) (lineage.DecideResponse, error) {
				return lineage.DecideResponse{Verdict: lineage.Deny, Scope: lineage.Scope{Object: lineage.ObjectPrefix}}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.decide(&fileRead) }, abi.ErrCodeInternal, "field prefix_len"},
		{"classify answers an invalid zone", func(f *fake) any {
			f.classify = func(*lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
				return lineage.ClassifyResponse{Classified: true, Zone: "Not A Zone"}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.classify(&execShell) }, abi.ErrCodeInternal, "field zone"},
		{"classify answers a reason that is not UTF-8", func(f *fake) any {
			f.classify = func(*lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
				return lineage.ClassifyResponse{Classified: true, Zone: "user", Reason: "\xff"}, nil
			}
			return f
		}, true, func(h *host) int32 { return h.classify(&execShell) }, abi.ErrCodeInternal, "valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{decide: okDecide, classify: okClassify}
			h := newHost(t, tt.plugin(f))
			if tt.init {
				h.mustInit()
			}
			h.wantError(tt.call(h), tt.code, tt.text)
		})
	}
}

// TestErrorMessageLimit checks that an error message longer than the ABI
// allows is cut, not refused.
func TestErrorMessageLimit(t *testing.T) {
	f := &fake{decide: func(*lineage.DecideRequest) (lineage.DecideResponse, error) {
		return lineage.DecideResponse{}, errors.New(strings.Repeat("e", 5000))
	}}
	h := newHost(t, f)
	h.mustInit()
	h.wantError(h.decide(&fileRead), abi.ErrCodeInternal, "eee")
	if msg := abi.ReadErrorMessage(h.buf); len(msg) != abi.MaxError {
		t.Errorf("message of %d bytes, want %d", len(msg), abi.MaxError)
	}
}

func TestDecideRoundTrip(t *testing.T) {
	var seen lineage.DecideRequest
	want := lineage.DecideResponse{
		Verdict: lineage.Deny,
		Scope:   lineage.Scope{Subject: lineage.SubjectZone, Object: lineage.ObjectPrefix, PrefixLen: 5, TTLMillis: 60000},
		Rule:    "etc.readonly", Reason: "nobody in this zone reads /etc",
	}
	f := &fake{decide: func(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
		// Request strings alias the buffer and are valid only during
		// the call, so a plugin that keeps them must copy them.
		seen = cloneDecide(*r)
		return want, nil
	}}
	h := newHost(t, f)
	h.mustInit()
	for i := 0; i < 3; i++ { // the dispatcher is reused across calls
		rc := h.decide(&fileRead)
		if rc < 0 {
			t.Fatalf("Decide = %d: %s", rc, abi.ReadErrorMessage(h.buf))
		}
		if seen != fileRead {
			t.Errorf("plugin saw %+v, want %+v", seen, fileRead)
		}
		var got abi.DecideResponse
		if err := got.Decode(h.buf[:rc], fileRead.Op); err != nil {
			t.Fatalf("host cannot decode the answer: %v", err)
		}
		if err := got.CheckScope(&fileRead); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("answer %+v, want %+v", got, want)
		}
	}
}

func TestDecideEveryOp(t *testing.T) {
	f := &fake{decide: func(r *lineage.DecideRequest) (lineage.DecideResponse, error) {
		return lineage.DecideResponse{Verdict: lineage.Abstain, Rule: r.Op.String()}, nil
	}}
	h := newHost(t, f)
	h.mustInit()
	for _, op := range abi.Ops() {
		t.Run(op.String(), func(t *testing.T) {
			req := abi.DecideRequest{Op: op, Zone: "z"}
			rc := h.decide(&req)
			var got abi.DecideResponse
			if rc < 0 {
				t.Fatalf("Decide = %d: %s", rc, abi.ReadErrorMessage(h.buf))
			}
			if err := got.Decode(h.buf[:rc], op); err != nil || got.Rule != op.String() {
				t.Errorf("answer %+v, %v: want one echoing op %s", got, err, op)
			}
		})
	}
}

func TestClassifyRoundTrip(t *testing.T) {
	var seen lineage.ClassifyRequest
	want := lineage.ClassifyResponse{Classified: true, Flags: abi.FlagInherited, Zone: "user", State: "\x00\xffbinary", Rule: "inherit", Reason: "created by a user process"}
	f := &fake{classify: func(r *lineage.ClassifyRequest) (lineage.ClassifyResponse, error) {
		seen = cloneClassify(*r)
		return want, nil
	}}
	h := newHost(t, classifyOnly{f})
	h.mustInit()
	for _, req := range []abi.ClassifyRequest{
		execShell,
		{Flags: abi.FlagCreatorUnknown, Exe: "/usr/sbin/sshd"},
		{Flags: abi.FlagInPlace, Exe: "/usr/bin/python3", FS: abi.FSNetwork, CreatorZone: "user", CreatorState: "s", CreatorExe: "/bin/sh"},
	} {
		rc := h.classify(&req)
		if rc < 0 {
			t.Fatalf("Classify = %d: %s", rc, abi.ReadErrorMessage(h.buf))
		}
		if seen != req {
			t.Errorf("plugin saw %+v, want %+v", seen, req)
		}
		var got abi.ClassifyResponse
		if err := got.Decode(h.buf[:rc]); err != nil {
			t.Fatalf("host cannot decode the answer: %v", err)
		}
		if got != want {
			t.Errorf("answer %+v, want %+v", got, want)
		}
	}
}

func TestRegister(t *testing.T) {
	for _, tt := range []struct {
		name   string
		plugin any
		panics bool
	}{
		{"decider", decideOnly{}, false},
		{"classifier", classifyOnly{}, false},
		{"both", &fake{}, false},
		{"neither", struct{}{}, true},
		{"nil", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r != nil) != tt.panics {
					t.Errorf("Register panicked: %v, want panic %v", r, tt.panics)
				}
			}()
			lineage.Register(tt.plugin)
		})
	}
}

func cloneDecide(r lineage.DecideRequest) lineage.DecideRequest {
	r.Zone, r.State, r.Object, r.TargetZone = strings.Clone(r.Zone), strings.Clone(r.State), strings.Clone(r.Object), strings.Clone(r.TargetZone)
	return r
}

func cloneClassify(r lineage.ClassifyRequest) lineage.ClassifyRequest {
	r.Exe, r.CreatorZone, r.CreatorState, r.CreatorExe = strings.Clone(r.Exe), strings.Clone(r.CreatorZone), strings.Clone(r.CreatorState), strings.Clone(r.CreatorExe)
	return r
}

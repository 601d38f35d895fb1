package policy

import (
	"math/rand/v2"
	"testing"

	"lineage.dev/lineage/abi"
)

// TestScopeTruthfulness is the property the host's cache relies on and the
// conformance suite checks: every request inside an answer's scope gets
// the same verdict, rule and reason. The table tests check it for their
// rows; this checks the interesting objects under every op, zone and
// filesystem kind, and random requests, under the defaults and a config
// with overlapping entries.
func TestScopeTruthfulness(t *testing.T) {
	for name, c := range map[string]Config{"default": DefaultConfig(), "custom": customConfig()} {
		p := mustNew(t, c)
		t.Run(name+"/interesting", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for _, obj := range interesting {
				for op := abi.Op(0); op <= abi.OpMemWrite+1; op++ {
					for _, zone := range zonePool {
						for fs := abi.FSLocal; fs <= abi.FSRemovable; fs++ {
							req := abi.DecideRequest{Op: op, Zone: zone, State: randState(rng), Object: obj, FS: fs, Proto: abi.ProtoTCP, Port: randPort(rng)}
							checkAnswer(t, p, &req, p.Decide(&req), rng, 8)
						}
					}
				}
			}
		})
		t.Run(name+"/random", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			n := 30000
			if testing.Short() {
				n = 3000
			}
			for range n {
				req := randRequest(rng)
				checkAnswer(t, p, &req, p.Decide(&req), rng, 20)
			}
		})
	}
}

// TestMonotonic checks the inheritance promise: whatever a child may do,
// its creator may do too. It drives Classify to get real child zones and
// states, then compares answers for random requests.
func TestMonotonic(t *testing.T) {
	p := mustNew(t, customConfig())
	rng := rand.New(rand.NewPCG(5, 6))
	exes := []string{
		"/usr/bin/bash", "/usr/bin/firefox", "/tmp/payload", "/mnt/share/tool", `C:\Windows\System32\cmd.exe`,
		`C:\Program Files\Microsoft Office\OUTLOOK.EXE`, `C:\Users\bob\Downloads\x.exe`, `\\srv\share\x.exe`, "",
	}
	creators := []abi.ClassifyRequest{
		{Flags: abi.FlagCreatorUnknown}, {CreatorZone: ZoneSystem}, {CreatorZone: ZoneGuarded, CreatorState: "1:firefox"},
		{CreatorZone: ZoneUntrusted, CreatorState: "1:payload"},
	}
	for range 2000 {
		cr := creators[rng.IntN(len(creators))]
		cr.Exe = exes[rng.IntN(len(exes))]
		cr.FS = abi.FSKind(rng.IntN(3))
		creator := p.Classify(&cr)
		child := p.Classify(&abi.ClassifyRequest{Exe: exes[rng.IntN(len(exes))], FS: abi.FSKind(rng.IntN(3)),
			CreatorZone: creator.Zone, CreatorState: creator.State, CreatorExe: cr.Exe, Flags: uint32(rng.IntN(2))})
		for range 20 {
			req := randRequest(rng)
			if !req.Op.Valid() {
				continue
			}
			req.Zone, req.State = child.Zone, child.State
			c := p.Decide(&req)
			req.Zone, req.State = creator.Zone, creator.State
			if c.Verdict == abi.Allow && p.Decide(&req).Verdict != abi.Allow {
				t.Fatalf("child %s (%s) may %s %q but its creator %s (%s) may not", child.Zone, child.State, req.Op, req.Object, creator.Zone, creator.State)
			}
		}
	}
}

// TestConcurrent hammers one Policy from many goroutines: it is immutable
// after New, so answers must not change and -race must stay quiet.
func TestConcurrent(t *testing.T) {
	p := mustNew(t, customConfig())
	rng := rand.New(rand.NewPCG(8, 9))
	reqs := make([]abi.DecideRequest, 500)
	want := make([]abi.DecideResponse, len(reqs))
	for i := range reqs {
		reqs[i] = randRequest(rng)
		want[i] = p.Decide(&reqs[i])
	}
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range reqs {
				j := (i + g*61) % len(reqs)
				req := reqs[j]
				if got := p.Decide(&req); got != want[j] {
					t.Errorf("%s: answer changed under concurrency", describe(&req))
					return
				}
				p.Classify(&abi.ClassifyRequest{Exe: req.Object, CreatorZone: req.Zone, CreatorState: req.State})
			}
		}()
	}
	for range 8 {
		<-done
	}
}

package policy

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"lineage.dev/lineage/abi"
)

var fuzzPolicies = func() []*Policy {
	a, _ := New(DefaultConfig())
	b, _ := New(customConfig())
	return []*Policy{a, b}
}()

// FuzzDecide feeds arbitrary requests: no panic, a well-formed answer whose
// scope holds its request, and truthful scopes for sampled neighbours.
func FuzzDecide(f *testing.F) {
	f.Add(uint8(abi.OpProcessExec), uint8(1), "1i:OUTLOOK.EXE", `C:\Windows\System32\cmd.exe`, uint8(0), uint8(0), uint16(0), uint64(1))
	f.Add(uint8(abi.OpRegistryWrite), uint8(1), "1:firefox.exe", `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\x`, uint8(0), uint8(0), uint16(0), uint64(2))
	f.Add(uint8(abi.OpFileRead), uint8(2), "", "/home/bob/.ssh/id_rsa", uint8(1), uint8(0), uint16(0), uint64(3))
	f.Add(uint8(abi.OpNetConnect), uint8(1), "x", "", uint8(0), uint8(6), uint16(4444), uint64(4))
	f.Add(uint8(abi.OpFileWrite), uint8(0), "1u:", `\\?\C:\x`, uint8(2), uint8(17), uint16(53), uint64(5))
	f.Fuzz(func(t *testing.T, op, zone uint8, st, obj string, fs, proto uint8, port uint16, seed uint64) {
		req := abi.DecideRequest{
			Op: abi.Op(op % 14), Zone: zonePool[int(zone)%len(zonePool)], State: st, Object: obj,
			// Only what the ABI decoder lets through reaches Decide.
			FS: abi.FSKind(fs % 3), Proto: protos[int(proto)%3], Port: port,
		}
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		for _, p := range fuzzPolicies {
			checkAnswer(t, p, &req, p.Decide(&req), rng, 4)
		}
	})
}

// FuzzClassify checks that every answer is well formed, its state parses,
// and inheritance from guarded and untrusted creators holds.
func FuzzClassify(f *testing.F) {
	f.Add(uint32(0), "/usr/bin/bash", uint8(0), "guarded", "1:firefox", "/usr/bin/firefox")
	f.Add(uint32(2), `C:\x\OUTLOOK.EXE`, uint8(1), "", "", "")
	f.Fuzz(func(t *testing.T, flags uint32, exe string, fs uint8, cz, cs, cexe string) {
		req := abi.ClassifyRequest{Flags: flags & 3, Exe: exe, FS: abi.FSKind(fs % 3), CreatorZone: cz, CreatorState: cs, CreatorExe: cexe}
		for _, p := range fuzzPolicies {
			got := p.Classify(&req)
			if err := got.Validate(); err != nil {
				t.Fatalf("%+v: %v", req, err)
			}
			if _, ok := parseState(got.State); !ok {
				t.Fatalf("%+v: state %q does not parse", req, got.State)
			}
			if !req.CreatorUnknown() && (cz == ZoneGuarded || cz == ZoneUntrusted) && (got.Zone != cz || !got.Inherited()) {
				t.Fatalf("%+v: got %+v, want %s inherited", req, got, cz)
			}
		}
	})
}

// FuzzState: whatever parses re-encodes to itself.
func FuzzState(f *testing.F) {
	for _, s := range statePool {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if st, ok := parseState(s); ok && st.encode() != s {
			t.Fatalf("%q parses to %+v, which encodes to %q", s, st, st.encode())
		}
	})
}

// FuzzParseConfig: no panic; an accepted config builds a policy and
// survives a JSON round trip.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"guarded_tcp_ports": [25, 53, 70000]}`))
	f.Add([]byte(`{"private_folders": ["/home/*/.ssh/"], "protected_registry": ["HKLM\\"]}`))
	f.Add([]byte(`{"system_space": ["C:/x/"], "allow_ttl_ms": 5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if _, err := New(c); err != nil {
			t.Fatalf("ParseConfig accepted what New rejects: %v", err)
		}
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(j)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, c, c2)
		}
	})
}

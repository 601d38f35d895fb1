package cache

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"lineage.dev/lineage/abi"
)

var (
	guardedA = NewSubject("guarded", "guarded\x00a")
	guardedB = NewSubject("guarded", "guarded\x00b")
	system   = NewSubject("system", "system\x00")
)

func path(op abi.Op, p string, fs abi.FSKind) *abi.DecideRequest {
	return &abi.DecideRequest{Op: op, Object: p, FS: fs}
}

func endpoint(op abi.Op, proto abi.Proto, port uint16, last byte) *abi.DecideRequest {
	r := &abi.DecideRequest{Op: op, Proto: proto, Port: port}
	r.Addr[15] = last
	return r
}

func val(s abi.Scope) Value {
	if s.TTLMillis == 0 {
		s.TTLMillis = 1000
	}
	return Value{Verdict: abi.Deny, Rule: "r", Reason: "because", Plugin: "p", Scope: s}
}

// TestScopes inserts one answer at a scope and probes requests inside and
// outside it.
func TestScopes(t *testing.T) {
	w := abi.OpFileWrite
	tests := []struct {
		name  string
		subj  Subject
		req   *abi.DecideRequest
		scope abi.Scope
		hits  []probe
		miss  []probe
	}{
		{
			name: "exact path", subj: guardedA, req: path(w, "/etc/passwd", abi.FSLocal),
			scope: abi.Scope{Subject: abi.SubjectZoneState, Object: abi.ObjectExact},
			hits:  []probe{{guardedA, path(w, "/etc/passwd", abi.FSLocal)}},
			miss: []probe{
				{guardedB, path(w, "/etc/passwd", abi.FSLocal)},
				{guardedA, path(w, "/etc/passwd", abi.FSNetwork)},
				{guardedA, path(w, "/etc/passwd2", abi.FSLocal)},
				{guardedA, path(abi.OpFileRead, "/etc/passwd", abi.FSLocal)},
			},
		},
		{
			name: "prefix keeps fs kind", subj: guardedA, req: path(w, "/usr/bin/ls", abi.FSLocal),
			scope: abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPrefix, PrefixLen: 5},
			hits: []probe{
				{guardedA, path(w, "/usr/lib/x.so", abi.FSLocal)},
				{guardedB, path(w, "/usr/", abi.FSLocal)},
			},
			miss: []probe{
				{guardedA, path(w, "/usr", abi.FSLocal)},
				{guardedA, path(w, "/usrlocal/x", abi.FSLocal)},
				{guardedA, path(w, "/usr/lib/x.so", abi.FSNetwork)},
				{system, path(w, "/usr/lib/x.so", abi.FSLocal)},
			},
		},
		{
			name: "registry prefix", subj: guardedA, req: &abi.DecideRequest{Op: abi.OpRegistryWrite, Object: `HKLM\Software\X`},
			scope: abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectPrefix, PrefixLen: 5},
			hits: []probe{
				{system, &abi.DecideRequest{Op: abi.OpRegistryWrite, Object: `HKLM\System`}},
			},
			miss: []probe{
				{system, &abi.DecideRequest{Op: abi.OpRegistryWrite, Object: `HKCU\Software`}},
				{system, &abi.DecideRequest{Op: abi.OpRegistryRead, Object: `HKLM\System`}},
			},
		},
		{
			name: "port range", subj: guardedA, req: endpoint(abi.OpNetConnect, abi.ProtoTCP, 4444, 7),
			scope: abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPortRange, PortLo: 996, PortHi: 65535},
			hits: []probe{
				{guardedB, endpoint(abi.OpNetConnect, abi.ProtoTCP, 996, 9)},
				{guardedB, endpoint(abi.OpNetConnect, abi.ProtoTCP, 65535, 1)},
			},
			miss: []probe{
				{guardedA, endpoint(abi.OpNetConnect, abi.ProtoTCP, 995, 7)},
				{guardedA, endpoint(abi.OpNetConnect, abi.ProtoUDP, 4444, 7)},
				{guardedA, endpoint(abi.OpNetBind, abi.ProtoTCP, 4444, 7)},
				{system, endpoint(abi.OpNetConnect, abi.ProtoTCP, 4444, 7)},
			},
		},
		{
			name: "exact endpoint keys the address", subj: guardedA, req: endpoint(abi.OpNetConnect, abi.ProtoTCP, 443, 7),
			scope: abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectExact},
			hits:  []probe{{guardedB, endpoint(abi.OpNetConnect, abi.ProtoTCP, 443, 7)}},
			miss:  []probe{{guardedA, endpoint(abi.OpNetConnect, abi.ProtoTCP, 443, 8)}},
		},
		{
			name: "exact process keys the target zone", subj: guardedA,
			req:   &abi.DecideRequest{Op: abi.OpMemWrite, Object: "/usr/bin/sshd", TargetZone: "system"},
			scope: abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectExact},
			hits:  []probe{{guardedA, &abi.DecideRequest{Op: abi.OpMemWrite, Object: "/usr/bin/sshd", TargetZone: "system"}}},
			miss:  []probe{{guardedA, &abi.DecideRequest{Op: abi.OpMemWrite, Object: "/usr/bin/sshd", TargetZone: "guarded"}}},
		},
		{
			name: "any object of the op", subj: guardedA, req: &abi.DecideRequest{Op: abi.OpMemRead, Object: "/x", TargetZone: "system"},
			scope: abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectAny},
			hits:  []probe{{guardedB, &abi.DecideRequest{Op: abi.OpMemRead, Object: "/y", TargetZone: "guarded"}}},
			miss: []probe{
				{guardedA, &abi.DecideRequest{Op: abi.OpMemWrite, Object: "/x", TargetZone: "system"}},
				{system, &abi.DecideRequest{Op: abi.OpMemRead, Object: "/x", TargetZone: "system"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(16)
			c.Insert(1, &tc.subj, tc.req, val(tc.scope), 0)
			if _, ok := c.Lookup(1, &tc.subj, tc.req, 1); !ok {
				t.Fatal("the inserted request itself misses")
			}
			for i, p := range tc.hits {
				if _, ok := c.Lookup(1, &p.subj, p.req, 1); !ok {
					t.Errorf("hit %d (%+v): missed", i, p.req)
				}
			}
			for i, p := range tc.miss {
				if v, ok := c.Lookup(1, &p.subj, p.req, 1); ok {
					t.Errorf("miss %d (%+v): hit %+v", i, p.req, v)
				}
			}
			if _, ok := c.Lookup(2, &tc.subj, tc.req, 1); ok {
				t.Error("another plugin generation hit")
			}
		})
	}
}

type probe struct {
	subj Subject
	req  *abi.DecideRequest
}

func TestTTLAndZeroTTL(t *testing.T) {
	c := New(4)
	req := path(abi.OpFileRead, "/a", abi.FSLocal)
	c.Insert(1, &system, req, val(abi.Scope{TTLMillis: 10}), 0)
	if _, ok := c.Lookup(1, &system, req, 9_999_999); !ok {
		t.Fatal("missed before the TTL ran out")
	}
	if _, ok := c.Lookup(1, &system, req, 10_000_000); ok {
		t.Fatal("hit after the TTL ran out")
	}
	v := val(abi.Scope{})
	v.Scope.TTLMillis = 0
	c.Insert(1, &system, path(abi.OpFileRead, "/b", abi.FSLocal), v, 0)
	if _, ok := c.Lookup(1, &system, path(abi.OpFileRead, "/b", abi.FSLocal), 0); ok {
		t.Fatal("a zero-TTL answer was cached")
	}
	if s := c.Stats(); s.Inserts != 1 || s.Entries != 1 || s.Hits != 1 || s.Misses != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictionSecondChance(t *testing.T) {
	c := New(3)
	reqs := make([]*abi.DecideRequest, 5)
	for i := range reqs {
		reqs[i] = path(abi.OpFileRead, fmt.Sprintf("/f%d", i), abi.FSLocal)
	}
	for i := 0; i < 3; i++ {
		c.Insert(1, &system, reqs[i], val(abi.Scope{}), 0)
	}
	// f0 is referenced, so the hand skips it once and evicts f1.
	c.Lookup(1, &system, reqs[0], 0)
	c.Insert(1, &system, reqs[3], val(abi.Scope{}), 0)
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.Lookup(1, &system, reqs[i], 0); ok != want {
			t.Errorf("f%d cached = %v, want %v", i, ok, want)
		}
	}
	s := c.Stats()
	if s.Evictions != 1 || s.Entries != 3 {
		t.Fatalf("stats %+v, want 1 eviction and 3 entries", s)
	}
	// An expired entry is dropped before any live one.
	c.Insert(1, &system, reqs[4], Value{Verdict: abi.Allow, Scope: abi.Scope{TTLMillis: 1}}, 0)
	c.Insert(1, &system, reqs[1], val(abi.Scope{}), 5_000_000)
	if _, ok := c.Lookup(1, &system, reqs[1], 5_000_000); !ok {
		t.Fatal("newest entry missing")
	}
	if got := c.Stats().Entries; got != 3 {
		t.Fatalf("entries %d, want 3", got)
	}
}

func TestReplaceAndPurge(t *testing.T) {
	c := New(8)
	req := path(abi.OpFileWrite, "/usr/x", abi.FSLocal)
	sc := abi.Scope{Subject: abi.SubjectAll, Object: abi.ObjectPrefix, PrefixLen: 5}
	c.Insert(1, &system, req, val(sc), 0)
	v := val(sc)
	v.Verdict = abi.Allow
	c.Insert(1, &system, req, v, 0)
	got, ok := c.Lookup(1, &system, req, 0)
	if !ok || got.Verdict != abi.Allow || c.Stats().Entries != 1 {
		t.Fatalf("replace: got %+v %v, %d entries", got, ok, c.Stats().Entries)
	}
	c.Insert(2, &system, req, val(abi.Scope{}), 0)
	c.Purge(2)
	if _, ok := c.Lookup(1, &system, req, 0); ok {
		t.Fatal("purged generation still hits")
	}
	if _, ok := c.Lookup(2, &system, req, 0); !ok {
		t.Fatal("kept generation lost")
	}
	// The prefix length bookkeeping went with the purged entry.
	if hasBit(*c.plens.Load(), 5) || len(c.plenRef) != 0 {
		t.Fatalf("prefix lengths left behind: %v %v", *c.plens.Load(), c.plenRef)
	}
}

// TestHammer runs lookups, inserts and evictions from several goroutines;
// run with -race.
func TestHammer(t *testing.T) {
	c := New(64)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			subjects := []Subject{guardedA, guardedB, system}
			for i := 0; i < 5000; i++ {
				s := subjects[r.Intn(3)]
				var req *abi.DecideRequest
				var sc abi.Scope
				switch r.Intn(4) {
				case 3:
					req = path(abi.OpFileWrite, fmt.Sprintf("/e/f%d", r.Intn(500)), abi.FSLocal)
					sc = abi.Scope{Subject: abi.ScopeSubject(r.Intn(3)), Object: abi.ObjectExact}
				case 0:
					req = path(abi.OpFileRead, fmt.Sprintf("/d%d/f%d", r.Intn(4), r.Intn(50)), abi.FSLocal)
					sc = abi.Scope{Subject: abi.ScopeSubject(r.Intn(3)), Object: abi.ObjectPrefix, PrefixLen: 4}
				case 1:
					req = endpoint(abi.OpNetConnect, abi.ProtoTCP, uint16(r.Intn(100)), 1)
					lo := uint16(r.Intn(int(req.Port) + 1))
					sc = abi.Scope{Subject: abi.ScopeSubject(r.Intn(3)), Object: abi.ObjectPortRange, PortLo: lo, PortHi: req.Port + 5}
				default:
					req = &abi.DecideRequest{Op: abi.OpMemRead, Object: "/x"}
					sc = abi.Scope{Subject: abi.ScopeSubject(r.Intn(3)), Object: abi.ScopeObject(r.Intn(2) * 3)}
				}
				if _, ok := c.Lookup(1, &s, req, int64(i)); !ok {
					c.Insert(1, &s, req, val(sc), int64(i))
				}
			}
		}(int64(g))
	}
	wg.Wait()
	s := c.Stats()
	if s.Entries > 64 || s.Hits == 0 || s.Evictions == 0 {
		t.Fatalf("stats %+v: want at most 64 entries, some hits and some evictions", s)
	}
}

func BenchmarkLookupHit(b *testing.B) {
	c := New(1024)
	req := path(abi.OpFileWrite, "/home/bob/Documents/reports/2026/quarterly-summary-000123.txt", abi.FSLocal)
	c.Insert(1, &guardedA, req, val(abi.Scope{Object: abi.ObjectExact}), 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Lookup(1, &guardedA, req, 1); !ok {
			b.Fatal("miss")
		}
	}
}

// manyPrefixes fills a cache with prefix entries of n distinct lengths, as
// a process writing into folders with names of every length would.
func manyPrefixes(n int) *Cache {
	c := New(2 * n)
	for i := 1; i <= n; i++ {
		dir := "/d" + strings.Repeat("x", i) + "/"
		c.Insert(1, &guardedA, path(abi.OpFileWrite, dir+"f", abi.FSLocal),
			val(abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPrefix, PrefixLen: uint32(len(dir))}), 0)
	}
	return c
}

func TestManyPrefixLengths(t *testing.T) {
	c := manyPrefixes(3000)
	if _, ok := c.Lookup(1, &guardedB, path(abi.OpFileWrite, "/d"+strings.Repeat("x", 1234)+"/sub/file", abi.FSLocal), 1); !ok {
		t.Fatal("a path under a cached folder missed")
	}
	if _, ok := c.Lookup(1, &guardedB, path(abi.OpFileWrite, "/dxx", abi.FSLocal), 1); ok {
		t.Fatal("a prefix that does not end at a separator hit")
	}
}

// BenchmarkLookupManyPrefixLengths: with 3,000 distinct prefix lengths
// cached, a hit costs about what it costs with one (the probes depend on
// the path's separators, not on the lengths in use).
func BenchmarkLookupManyPrefixLengths(b *testing.B) {
	c := manyPrefixes(3000)
	req := path(abi.OpFileWrite, "/dxxxxxxxxxx/Documents/reports/2026/q3/summary-final-1.txt", abi.FSLocal)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Lookup(1, &guardedA, req, 1); !ok {
			b.Fatal("miss")
		}
	}
}

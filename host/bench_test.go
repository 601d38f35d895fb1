package host

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/plugins/builtin"
)

// Benchmarks for the figures issue 2 asks for; run them with `make bench`
// and compare runs with benchstat.

const benchCache = 1 << 16

// benchEngine returns an engine over the built-in zones plugin and a
// guarded process: bash started by thunderbird started by a system bash.
func benchEngine(b *testing.B) (*Engine, ProcessID) {
	b.Helper()
	// Throughput is measured here; deadlines are tested elsewhere. On a
	// busy 2-core machine a guest call occasionally overruns the default
	// 20 ms and would turn into a failure verdict mid-benchmark.
	rt := newTestRuntime(b, Limits{CallDeadline: time.Second})
	zones, err := rt.Load(ctx, builtin.ZonesSource, builtin.Zones, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { zones.Close(ctx) })
	e := newTestEngine(b, Config{CacheEntries: benchCache}, zones)
	root := e.Exist(ctx, ProcessID{PID: 1, Start: 1}, "/usr/bin/bash", abi.FSLocal)
	tb, err := e.Start(ctx, ProcessID{PID: 2, Start: 2}, root.ID, "/usr/bin/thunderbird", abi.FSLocal)
	if err != nil {
		b.Fatal(err)
	}
	sh, err := e.Start(ctx, ProcessID{PID: 3, Start: 3}, tb.ID, "/usr/bin/bash", abi.FSLocal)
	if err != nil || sh.Zone != "guarded" {
		b.Fatalf("shell %+v, %v", sh, err)
	}
	return e, sh.ID
}

// benchPath returns a realistic 60-byte user-space path; n makes it unique
// in its first component, because the zones plugin (truthfully) answers
// user-space writes for a whole folder such as /home/bob/Documents/.
func benchPath(n int) string {
	p := fmt.Sprintf("/u%012d/Documents/reports/2026/q3/summary-final-1.txt", n)
	if len(p) != 60 {
		panic(len(p))
	}
	return p
}

// BenchmarkDecideCacheHit: a full decision (process table, cache, verdict)
// served from the cache, request already in ABI form.
func BenchmarkDecideCacheHit(b *testing.B) {
	e, sh := benchEngine(b)
	req := &Request{Subject: sh, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite, Object: benchPath(1)}}
	if d, err := e.Decide(ctx, req); err != nil || d.Cached {
		b.Fatalf("warm-up: %+v %v", d, err)
	}
	b.ReportAllocs()
	var d Decision
	for b.Loop() {
		if err := e.DecideInto(ctx, req, &d); err != nil || !d.Cached {
			b.Fatalf("%+v %v", d, err)
		}
	}
}

// BenchmarkDecideMiss: a full decision through the reference plugin:
// encode, call, decode, cache insert (into a full cache, so with an
// eviction). Twice as many distinct exact-scope paths as cache entries,
// visited in a cycle, make every lookup miss.
func BenchmarkDecideMiss(b *testing.B) {
	e, sh := benchEngine(b)
	paths := make([]string, 2*benchCache)
	for i := range paths {
		paths[i] = benchPath(i)
	}
	req := &Request{Subject: sh, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite}}
	before := e.Stats().Cache
	b.ReportAllocs()
	i := 0
	var d Decision
	for b.Loop() {
		req.Object = paths[i%len(paths)]
		i++
		err := e.DecideInto(ctx, req, &d)
		if err != nil || d.Failure || d.Verdict != abi.Allow {
			b.Fatalf("%+v %v", d, err)
		}
	}
	if after := e.Stats().Cache; after.Hits != before.Hits {
		b.Fatalf("%d cache hits: the benchmark must measure misses only", after.Hits-before.Hits)
	}
}

// BenchmarkClassify: a process start through the reference plugin (a
// guarded parent starting a child, classified and recorded), with the
// process's exit to keep the table at a steady size.
func BenchmarkClassify(b *testing.B) {
	e, sh := benchEngine(b)
	b.ReportAllocs()
	pid := uint32(100)
	for b.Loop() {
		pid++
		id := ProcessID{PID: pid, Start: uint64(pid)}
		p, err := e.Start(ctx, id, sh, "/usr/bin/python3", abi.FSLocal)
		if err != nil || p.Zone != "guarded" {
			b.Fatalf("%+v %v", p, err)
		}
		e.Exit(id)
	}
}

// BenchmarkDecideParallel reports decisions per second with two
// concurrent callers (GOMAXPROCS on the project's 2-core machines): hits on
// a working set of 512 files each, and misses (each caller cycles through
// twice the cache size of its own paths, and gets its own plugin instance).
func BenchmarkDecideParallel(b *testing.B) {
	for _, mode := range []string{"hit", "miss"} {
		b.Run(mode, func(b *testing.B) {
			e, sh := benchEngine(b)
			n := 512
			if mode == "miss" {
				n = 2 * benchCache
			}
			var sets [][]string
			for g := 0; g < runtime.GOMAXPROCS(0); g++ {
				paths := make([]string, n)
				for i := range paths {
					paths[i] = benchPath(g<<20 + i)
				}
				sets = append(sets, paths)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				paths := sets[int(next.Add(1)-1)%len(sets)]
				req := &Request{Subject: sh, DecideRequest: abi.DecideRequest{Op: abi.OpFileWrite}}
				var d Decision
				for i := 0; pb.Next(); i++ {
					req.Object = paths[i%len(paths)]
					if err := e.DecideInto(ctx, req, &d); err != nil || d.Failure {
						b.Errorf("%+v %v", d, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkPluginCall is the host's fixed cost of one plugin call (arm
// the deadline, encode, call, decode, check the scope) against a plugin
// written directly in WAT, which does no work of its own.
func BenchmarkPluginCall(b *testing.B) {
	p := loadBehave(b, newTestRuntime(b, Limits{}), "behave", 'a')
	req := abi.DecideRequest{Op: abi.OpFileWrite, Zone: "guarded", Object: benchPath(1)}
	var resp abi.DecideResponse
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decide(ctx, &req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideCachedOpen is the Linux agent's fast path for one open:
// the read, write and code.load decisions of a system process for a file
// in system space, each from the cache only (DecideCachedInto).
func BenchmarkDecideCachedOpen(b *testing.B) {
	e, _ := benchEngine(b)
	svc := e.Exist(ctx, ProcessID{PID: 10, Start: 10}, "/usr/sbin/cron", abi.FSLocal)
	req := &Request{Subject: svc.ID, DecideRequest: abi.DecideRequest{Object: "/usr/share/lineage-bench/data/file.txt"}}
	ops := []abi.Op{abi.OpFileRead, abi.OpFileWrite, abi.OpCodeLoad}
	var d Decision
	for _, op := range ops {
		req.Op = op
		if err := e.DecideInto(ctx, req, &d); err != nil || d.Verdict != abi.Allow {
			b.Fatalf("warm-up %v: %+v %v", op, d, err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, op := range ops {
			req.Op = op
			if hit, err := e.DecideCachedInto(ctx, req, &d); err != nil || !hit {
				b.Fatalf("%v: %+v %v", op, d, err)
			}
		}
	}
}

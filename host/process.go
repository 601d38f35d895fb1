package host

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"lineage.dev/lineage/host/internal/cache"
)

// ProcessID identifies a process for its whole life: a pid alone is reused,
// a pid with its start time is not.
type ProcessID struct {
	PID   uint32
	Start uint64 // start time in the OS's unit (clock ticks since boot on Linux)
}

func (id ProcessID) String() string { return fmt.Sprintf("%d@%d", id.PID, id.Start) }

// Process is one process image as the host classified it. It is immutable:
// an exec in place or a fork produces a new Process, so a Decision or a
// lineage chain that holds one stays consistent.
type Process struct {
	ID  ProcessID
	Exe string

	Zone   string // the zone its decisions use
	Rule   string // classification rule, from the plugin that set the zone
	Reason string
	Plugin string // the plugin that set the zone ("" if none did)

	// AncestryUnknown: the process predates the host (or its creator was
	// never seen), so it was classified by its own executable alone.
	AncestryUnknown bool
	// InPlace: this image replaced an earlier one of the same process;
	// Creator is that earlier image.
	InPlace bool
	// ClassifyFailed: a classifier failed and Zone is the failure zone.
	ClassifyFailed bool

	// Creator is the process that created this one at fork time (or the
	// previous image, for an exec in place); nil if unknown.
	Creator *Process
	// Origin is the ancestor whose classification set Zone: itself unless
	// the zone was inherited.
	Origin *Process

	// AncestryTruncated: this record is a copy that ends a long chain;
	// its own creators were dropped (see maxChain).
	AncestryTruncated bool

	states []string      // per plugin, in engine plugin order
	subj   cache.Subject // precomputed cache subject
	depth  int           // creator links below this record
}

// maxChain bounds the creator links a process record keeps alive. Without
// a bound, a process that forks and exits (or execs in place) in a loop
// would make the host hold every ancestor forever.
const maxChain = 64

// State returns plugin i's opaque state for the process.
func (p *Process) State(i int) string {
	if i < len(p.states) {
		return p.states[i]
	}
	return ""
}

// Lineage returns the chain from p up to the ancestor that set its zone,
// p first. For a zone the process earned itself, that is just p.
func (p *Process) Lineage() []*Process {
	var chain []*Process
	for q := p; q != nil; q = q.Creator {
		chain = append(chain, q)
		if q == p.Origin {
			break // a truncated copy ends the walk by having no creator
		}
	}
	return chain
}

// Ancestry returns the full known chain of creators, p first.
func (p *Process) Ancestry() []*Process {
	var chain []*Process
	for q := p; q != nil; q = q.Creator {
		chain = append(chain, q)
	}
	return chain
}

// BaseName returns the executable's name without its directory, for
// either slash.
func (p *Process) BaseName() string {
	return p.Exe[strings.LastIndexAny(p.Exe, `/\`)+1:]
}

func newProcess(p *Process) *Process {
	if p.Origin == nil {
		p.Origin = p
	}
	if c := p.Creator; c != nil {
		p.depth = c.depth + 1
		if p.depth > maxChain {
			// End the chain at a copy of the creator that holds no
			// further links; the zone's origin is kept by pointer.
			cut := *c
			cut.Creator, cut.depth, cut.AncestryTruncated = nil, 0, true
			p.Creator, p.depth = &cut, 1
		}
	}
	// Length-prefix every state so that no two (zone, states) tuples
	// share an encoding, whatever bytes the states hold.
	b := make([]byte, 0, len(p.Zone)+8*len(p.states)+16)
	b = append(b, p.Zone...)
	b = append(b, 0)
	for _, s := range p.states {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	p.subj = cache.NewSubject(p.Zone, string(b))
	return p
}

// table maps live process identities to their current image. Every
// decision looks its subject up here, so reads take no lock: buckets are
// published with atomic stores and chains are built from immutable nodes,
// while writers serialize on mu. A resize publishes a new bucket array;
// a reader still walking the old one sees the table as it was an instant
// earlier, which is all a lookup racing with a fork or exit can expect.
type table struct {
	buckets atomic.Pointer[[]atomic.Pointer[tnode]]
	mu      sync.Mutex
	n       int
	byPID   map[uint32]ProcessID // guarded by mu
}

type tnode struct {
	p    *Process
	next atomic.Pointer[tnode]
}

// tableSeed randomizes bucket placement per host process, so that pids and
// start times an attacker can influence cannot be chosen to collide.
var tableSeed = maphash.Bytes(maphash.MakeSeed(), []byte("lineage process table"))

// idHash mixes the two integers of an identity (the splitmix64 finalizer);
// the generic maphash.Comparable took two thirds of a table lookup.
func idHash(id ProcessID) uint64 {
	h := (uint64(id.PID)<<32 | uint64(id.PID)) ^ id.Start*0x9e3779b97f4a7c15 ^ tableSeed
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func newTable() *table {
	t := &table{byPID: make(map[uint32]ProcessID)}
	b := make([]atomic.Pointer[tnode], 1024)
	t.buckets.Store(&b)
	return t
}

func (t *table) get(id ProcessID) *Process {
	b := *t.buckets.Load()
	for n := b[idHash(id)&uint64(len(b)-1)].Load(); n != nil; n = n.next.Load() {
		if n.p.ID == id {
			return n.p
		}
	}
	return nil
}

func (t *table) running(pid uint32) *Process {
	t.mu.Lock()
	id, ok := t.byPID[pid]
	t.mu.Unlock()
	if !ok {
		return nil
	}
	return t.get(id)
}

// put records p as the current image of p.ID; an older process with the
// same pid (whose exit was missed) is dropped.
func (t *table) put(p *Process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byPID[p.ID.PID]; ok && old != p.ID {
		t.unlink(old, nil)
	}
	if t.n >= 2*len(*t.buckets.Load()) {
		t.grow()
	}
	// Link the new image before unlinking the one it replaces, so that a
	// concurrent reader always finds one of them.
	b := *t.buckets.Load()
	slot := &b[idHash(p.ID)&uint64(len(b)-1)]
	n := &tnode{p: p}
	n.next.Store(slot.Load())
	slot.Store(n)
	t.n++
	t.unlink(p.ID, n)
	t.byPID[p.ID.PID] = p.ID
}

// unlink removes id's node other than keep, if any; mu is held. Nodes are
// never modified except their next link, so a reader standing on a removed
// node still reaches the rest of its chain.
func (t *table) unlink(id ProcessID, keep *tnode) bool {
	b := *t.buckets.Load()
	slot := &b[idHash(id)&uint64(len(b)-1)]
	var prev *tnode
	for n := slot.Load(); n != nil; prev, n = n, n.next.Load() {
		if n.p.ID != id || n == keep {
			continue
		}
		if prev == nil {
			slot.Store(n.next.Load())
		} else {
			prev.next.Store(n.next.Load())
		}
		t.n--
		return true
	}
	return false
}

// grow doubles the bucket array with fresh nodes; mu is held.
func (t *table) grow() {
	old := *t.buckets.Load()
	nb := make([]atomic.Pointer[tnode], 2*len(old))
	for i := range old {
		for n := old[i].Load(); n != nil; n = n.next.Load() {
			slot := &nb[idHash(n.p.ID)&uint64(len(nb)-1)]
			c := &tnode{p: n.p}
			c.next.Store(slot.Load())
			slot.Store(c)
		}
	}
	t.buckets.Store(&nb)
}

func (t *table) remove(id ProcessID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.unlink(id, nil) {
		return false
	}
	if t.byPID[id.PID] == id {
		delete(t.byPID, id.PID)
	}
	return true
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Package cache is the host's scoped decision cache: it stores plugin
// answers at the scope the plugin claimed (exact object, path prefix, port
// range or any object; one zone and state, one zone, or every subject) and
// answers later requests that fall inside a stored scope.
//
// Hits are the hot path of every kernel permission event, so they never
// allocate and take no lock: a key's 64-bit hash (from a per-process subject
// hash and one hash of the object) picks a bucket of atomically published
// entries, and the full key is compared to rule out collisions.
// Inserts are serialized, bounded by CLOCK (second chance) eviction, and
// drop expired entries as the hand passes them. The package imports only
// abi and the standard library; it knows nothing of plugins or processes.
package cache

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"lineage.dev/lineage/abi"
)

// Value is what a hit returns. It is immutable once inserted.
type Value struct {
	Verdict abi.Verdict
	Rule    string
	Reason  string
	Plugin  string
	Scope   abi.Scope
	// Expires is when a stored answer stops being used (clock
	// nanoseconds): set by Insert, 0 for an answer not stored.
	Expires int64
}

var seed = maphash.MakeSeed()

// Subject identifies the requester at the granularities a scope can name,
// with their hashes precomputed: build one per process with NewSubject.
type Subject struct {
	Zone      string
	ZoneState string // the zone and every plugin's state, unambiguously encoded
	hZone     uint64
	hState    uint64
}

// NewSubject returns the Subject for a zone and its zone+state encoding.
func NewSubject(zone, zoneState string) Subject {
	return Subject{Zone: zone, ZoneState: zoneState, hZone: maphash.String(seed, zone), hState: maphash.String(seed, zoneState)}
}

// Stats are cumulative counters.
type Stats struct {
	Hits, Misses, Inserts, Evictions, Expired uint64
	Entries                                   int
}

type key struct {
	gen    uint64
	sdim   abi.ScopeSubject
	odim   abi.ScopeObject
	op     abi.Op
	fs     abi.FSKind
	proto  abi.Proto
	port   uint16
	subj   string
	obj    string
	target string
	addr   [16]byte
}

// rangeKey groups port-range entries: ranges are scanned, not hashed.
type rangeKey struct {
	gen   uint64
	sdim  abi.ScopeSubject
	op    abi.Op
	proto abi.Proto
	subj  string
}

type entry struct {
	key     key
	hash    uint64
	val     Value
	expires int64 // clock nanoseconds
	ref     atomic.Bool
	next    atomic.Pointer[entry] // same bucket
	slot    int                   // index in the CLOCK ring
}

// counter is padded so that callers on different cores counting hits do
// not share a cache line.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

const stripes = 16

// Cache is safe for concurrent use. Readers take no lock: buckets, chain
// links, the prefix-length list and the range index are published with
// atomic stores, and writers (serialized by imu) never modify anything a
// reader can see except through those stores. Removed entries stay valid
// for readers still holding them; the garbage collector reclaims them.
type Cache struct {
	buckets []atomic.Pointer[entry]
	mask    uint64
	live    atomic.Uint32                         // bit sdim*4+odim: some entry has that scope shape
	plens   atomic.Pointer[[]uint64]              // bitmap of prefix lengths in use
	ranges  atomic.Pointer[map[rangeKey][]*entry] // copy on write
	hits    [stripes]counter
	misses  [stripes]counter

	// Insert side, serialized by imu.
	imu       sync.Mutex
	max       int
	n         int
	shapes    [3][4]int
	ring      []*entry // CLOCK ring; nil slots are free
	free      []int
	hand      int
	plenRef   map[int]int
	inserts   atomic.Uint64
	evictions atomic.Uint64
	expired   atomic.Uint64
}

// New returns a cache holding at most max entries (at least 1).
func New(max int) *Cache {
	if max < 1 {
		max = 1
	}
	nb := 1
	for nb < max {
		nb <<= 1
	}
	c := &Cache{
		max: max, buckets: make([]atomic.Pointer[entry], nb), mask: uint64(nb - 1),
		ring: make([]*entry, 0, min(max, 1<<16)), plenRef: make(map[int]int),
	}
	c.plens.Store(new([]uint64))
	c.ranges.Store(&map[rangeKey][]*entry{})
	return c
}

func mix(h uint64) uint64 {
	// The splitmix64 finalizer: spreads small field values over all bits.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func hashOf(gen uint64, sd abi.ScopeSubject, od abi.ScopeObject, op abi.Op, fs abi.FSKind, hSubj, hObj uint64) uint64 {
	small := gen<<24 ^ uint64(sd)<<20 ^ uint64(od)<<16 ^ uint64(op)<<4 ^ uint64(fs)
	return mix(small ^ mix(hSubj^mix(hObj)))
}

func (k *key) hashWith(hSubj, hObj uint64) uint64 {
	return hashOf(k.gen, k.sdim, k.odim, k.op, k.fs, hSubj, hObj)
}

// exactHash hashes the object fields an exact scope compares.
func exactHash(req *abi.DecideRequest) uint64 {
	h := maphash.String(seed, req.Object)
	switch req.Op.Object() {
	case abi.ObjectEndpoint:
		h ^= mix(uint64(req.Proto)<<16 | uint64(req.Port))
		h ^= mix(le64(req.Addr[:8]) ^ mix(le64(req.Addr[8:])))
	case abi.ObjectProcess:
		h ^= mix(maphash.String(seed, req.TargetZone))
	}
	return h
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func (s *Subject) hash(sd abi.ScopeSubject) (string, uint64) {
	switch sd {
	case abi.SubjectZoneState:
		return s.ZoneState, s.hState
	case abi.SubjectZone:
		return s.Zone, s.hZone
	}
	return "", 0
}

// The probes below compare an entry's key field by field instead of
// building a key to compare with: a hit is a few dozen nanoseconds, and
// zeroing and filling a key struct per probe was a sixth of it.

// getExact returns the live exact-scope entry for req.
func (c *Cache) getExact(h, gen uint64, sd abi.ScopeSubject, subj string, req *abi.DecideRequest, now int64) *entry {
	for e := c.buckets[h&c.mask].Load(); e != nil; e = e.next.Load() {
		k := &e.key
		if e.hash == h && k.gen == gen && k.sdim == sd && k.odim == abi.ObjectExact && k.op == req.Op &&
			k.fs == req.FS && k.proto == req.Proto && k.port == req.Port && k.addr == req.Addr &&
			k.subj == subj && k.obj == req.Object && k.target == req.TargetZone {
			return live(e, now)
		}
	}
	return nil
}

// maxPrefixProbes bounds the prefix lookups of one request and subject
// scope: the longest candidate prefixes are probed, the rest are misses,
// which only cost a plugin call.
const maxPrefixProbes = 32

// findPrefix probes the prefixes of req's object that end just after a
// separator (or are the whole object) and have a length some entry uses.
// Prefix scopes may only end there (abi.IsSeparator), so the work depends
// on the path's depth, not on how many prefix lengths the cache holds.
func (c *Cache) findPrefix(gen uint64, sd abi.ScopeSubject, subj string, hs uint64, req *abi.DecideRequest, now int64) (*entry, uint64) {
	lens := *c.plens.Load()
	obj := req.Object
	var pos [maxPrefixProbes]int
	np := 0
	// Walk the lengths in use that fit the object, longest first, keeping
	// those that end at a separator (or are the whole object). Usually a
	// handful of bits; never more than the object's length.
	for w := min(len(obj)>>6, len(lens)-1); w >= 0 && np < maxPrefixProbes; w-- {
		word := lens[w]
		if w == len(obj)>>6 {
			word &= 1<<(uint(len(obj))&63+1) - 1 // lengths up to len(obj)
		}
		for word != 0 && np < maxPrefixProbes {
			b := 63 - bits.LeadingZeros64(word)
			word &^= 1 << b
			n := w<<6 + b
			if n > 0 && (n == len(obj) || abi.IsSeparator(obj[n-1])) {
				pos[np] = n
				np++
			}
		}
	}
	if np == 1 { // the common case: one candidate, hash it directly
		n := pos[0]
		h := hashOf(gen, sd, abi.ObjectPrefix, req.Op, req.FS, hs, maphash.String(seed, obj[:n]))
		return c.getPrefix(h, gen, sd, subj, req.Op, req.FS, obj[:n], now), h
	}
	// Hash incrementally from the shortest candidate: maphash depends only
	// on the bytes written, so this equals maphash.String of each prefix.
	var mh maphash.Hash
	mh.SetSeed(seed)
	last := 0
	for j := np - 1; j >= 0; j-- {
		n := pos[j]
		mh.WriteString(obj[last:n])
		last = n
		h := hashOf(gen, sd, abi.ObjectPrefix, req.Op, req.FS, hs, mh.Sum64())
		if e := c.getPrefix(h, gen, sd, subj, req.Op, req.FS, obj[:n], now); e != nil {
			return e, h
		}
	}
	return nil, 0
}

func hasBit(lens []uint64, n int) bool { return n>>6 < len(lens) && lens[n>>6]&(1<<(n&63)) != 0 }

// getPrefix returns the live prefix-scope entry for prefix obj.
func (c *Cache) getPrefix(h, gen uint64, sd abi.ScopeSubject, subj string, op abi.Op, fs abi.FSKind, obj string, now int64) *entry {
	for e := c.buckets[h&c.mask].Load(); e != nil; e = e.next.Load() {
		k := &e.key
		if e.hash == h && k.gen == gen && k.sdim == sd && k.odim == abi.ObjectPrefix && k.op == op &&
			k.fs == fs && k.subj == subj && k.obj == obj {
			return live(e, now)
		}
	}
	return nil
}

// getAny returns the live any-object entry for op.
func (c *Cache) getAny(h, gen uint64, sd abi.ScopeSubject, subj string, op abi.Op, now int64) *entry {
	for e := c.buckets[h&c.mask].Load(); e != nil; e = e.next.Load() {
		k := &e.key
		if e.hash == h && k.gen == gen && k.sdim == sd && k.odim == abi.ObjectAny && k.op == op && k.subj == subj {
			return live(e, now)
		}
	}
	return nil
}

func live(e *entry, now int64) *entry {
	if now >= e.expires {
		return nil
	}
	return e
}

// Lookup returns the value of a live entry whose scope holds req for
// subject s under plugin generation gen.
func (c *Cache) Lookup(gen uint64, s *Subject, req *abi.DecideRequest, now int64) (*Value, bool) {
	return c.lookup(gen, s, req, now, true)
}

// Peek is Lookup for a caller that goes on to a full lookup on a miss: a
// miss is not counted, so it is not counted twice.
func (c *Cache) Peek(gen uint64, s *Subject, req *abi.DecideRequest, now int64) (*Value, bool) {
	return c.lookup(gen, s, req, now, false)
}

func (c *Cache) lookup(gen uint64, s *Subject, req *abi.DecideRequest, now int64, countMiss bool) (*Value, bool) {
	e, first := c.find(gen, s, req, now)
	if e == nil {
		if countMiss {
			c.misses[first>>60].n.Add(1)
		}
		return nil, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	c.hits[first>>60].n.Add(1)
	return &e.val, true
}

func shapeBit(sd abi.ScopeSubject, od abi.ScopeObject) uint32 {
	return 1 << (uint32(sd)*4 + uint32(od))
}

// find probes the scopes in a fixed order; first is the hash of the first
// probe, used to spread counter updates over stripes.
func (c *Cache) find(gen uint64, s *Subject, req *abi.DecideRequest, now int64) (e *entry, first uint64) {
	live := c.live.Load()
	if live == 0 {
		return nil, 0
	}
	objKind := req.Op.Object()
	var hExact uint64
	haveExact := false
	for sd := abi.SubjectZoneState; sd <= abi.SubjectAll; sd++ {
		shapes := live >> (uint32(sd) * 4) & 0xf
		if shapes == 0 {
			continue
		}
		subj, hs := s.hash(sd)
		if shapes&(1<<abi.ObjectExact) != 0 {
			if !haveExact {
				hExact, haveExact = exactHash(req), true
			}
			h := hashOf(gen, sd, abi.ObjectExact, req.Op, req.FS, hs, hExact)
			if first == 0 {
				first = h
			}
			if e := c.getExact(h, gen, sd, subj, req, now); e != nil {
				return e, first
			}
		}
		if shapes&(1<<abi.ObjectPrefix) != 0 && (objKind == abi.ObjectPath || objKind == abi.ObjectKey) {
			if e, h := c.findPrefix(gen, sd, subj, hs, req, now); e != nil {
				if first == 0 {
					first = h
				}
				return e, first
			}
		}
		if shapes&(1<<abi.ObjectPortRange) != 0 && objKind == abi.ObjectEndpoint {
			for _, e := range (*c.ranges.Load())[rangeKey{gen, sd, req.Op, req.Proto, subj}] {
				if req.Port >= e.val.Scope.PortLo && req.Port <= e.val.Scope.PortHi && now < e.expires {
					return e, first
				}
			}
		}
		if shapes&(1<<abi.ObjectAny) != 0 {
			h := hashOf(gen, sd, abi.ObjectAny, req.Op, 0, hs, 0)
			if first == 0 {
				first = h
			}
			if e := c.getAny(h, gen, sd, subj, req.Op, now); e != nil {
				return e, first
			}
		}
	}
	return nil, first
}

// Insert stores v for the scope v.Scope around req. Scopes with a zero TTL
// are not stored. The caller has checked the scope against req
// (abi.DecideResponse.CheckScope).
func (c *Cache) Insert(gen uint64, s *Subject, req *abi.DecideRequest, v Value, now int64) {
	sc := v.Scope
	if sc.TTLMillis == 0 {
		return
	}
	subj, hs := s.hash(sc.Subject)
	e := &entry{val: v, expires: now + int64(sc.TTLMillis)*1e6}
	e.val.Expires = e.expires
	k := key{gen: gen, sdim: sc.Subject, odim: sc.Object, op: req.Op, subj: subj}
	var hObj uint64
	switch sc.Object {
	case abi.ObjectExact:
		k.obj, k.fs, k.proto, k.port, k.addr, k.target = req.Object, req.FS, req.Proto, req.Port, req.Addr, req.TargetZone
		hObj = exactHash(req)
	case abi.ObjectPrefix:
		k.obj, k.fs = req.Object[:sc.PrefixLen], req.FS
		hObj = maphash.String(seed, k.obj)
	case abi.ObjectPortRange:
		// Ranges are found by scanning c.ranges; the hashed key (with
		// the bounds in it) only makes the entry unique for
		// replacement and eviction.
		k.proto, k.port = req.Proto, sc.PortLo
		k.addr[0], k.addr[1] = byte(sc.PortHi), byte(sc.PortHi>>8)
		hObj = uint64(sc.PortLo)<<16 | uint64(sc.PortHi)
	}
	e.key, e.hash = k, k.hashWith(hs, hObj)

	c.imu.Lock()
	defer c.imu.Unlock()
	if old := c.getLocked(e.hash, &k); old != nil {
		c.remove(old)
	}
	for c.n >= c.max {
		c.evictOne(now)
	}
	if len(c.free) > 0 {
		e.slot = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		c.ring[e.slot] = e
	} else {
		e.slot = len(c.ring)
		c.ring = append(c.ring, e)
	}
	c.n++
	switch k.odim {
	case abi.ObjectPrefix:
		c.addPrefixLen(len(k.obj))
	case abi.ObjectPortRange:
		c.updateRanges(rangeKey{gen, k.sdim, k.op, k.proto, k.subj}, e, nil)
	}
	b := &c.buckets[e.hash&c.mask]
	e.next.Store(b.Load())
	b.Store(e)
	// Publish the shape only once the entry can be found, so a reader
	// that sees the bit also finds the entry.
	c.shapes[k.sdim][k.odim]++
	c.live.Store(c.live.Load() | shapeBit(k.sdim, k.odim))
	c.inserts.Add(1)
}

func (c *Cache) getLocked(h uint64, k *key) *entry {
	for e := c.buckets[h&c.mask].Load(); e != nil; e = e.next.Load() {
		if e.hash == h && e.key == *k {
			return e
		}
	}
	return nil
}

// evictOne advances the CLOCK hand until it removes one entry: expired
// entries go at once, referenced entries get a second chance.
func (c *Cache) evictOne(now int64) {
	for {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		e := c.ring[c.hand]
		c.hand++
		if e == nil {
			continue
		}
		if now >= e.expires {
			c.remove(e)
			c.expired.Add(1)
			return
		}
		if e.ref.Load() {
			e.ref.Store(false)
			continue
		}
		c.remove(e)
		c.evictions.Add(1)
		return
	}
}

// remove unlinks e; imu is held. A reader standing on e keeps following
// e.next, which still leads to the rest of the chain.
func (c *Cache) remove(e *entry) {
	b := &c.buckets[e.hash&c.mask]
	if b.Load() == e {
		b.Store(e.next.Load())
	} else {
		for p := b.Load(); p != nil; p = p.next.Load() {
			if p.next.Load() == e {
				p.next.Store(e.next.Load())
				break
			}
		}
	}
	k := &e.key
	c.shapes[k.sdim][k.odim]--
	if c.shapes[k.sdim][k.odim] == 0 {
		c.live.Store(c.live.Load() &^ shapeBit(k.sdim, k.odim))
	}
	c.ring[e.slot] = nil
	c.free = append(c.free, e.slot)
	c.n--
	switch k.odim {
	case abi.ObjectPrefix:
		c.dropPrefixLen(len(k.obj))
	case abi.ObjectPortRange:
		c.updateRanges(rangeKey{k.gen, k.sdim, k.op, k.proto, k.subj}, nil, e)
	}
}

// updateRanges publishes a copy of the range index with add added to, or
// drop removed from, the list under rk.
func (c *Cache) updateRanges(rk rangeKey, add, drop *entry) {
	old := *c.ranges.Load()
	m := make(map[rangeKey][]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	list := make([]*entry, 0, len(old[rk])+1)
	for _, x := range old[rk] {
		if x != drop {
			list = append(list, x)
		}
	}
	if add != nil {
		list = append(list, add)
	}
	if len(list) == 0 {
		delete(m, rk)
	} else {
		m[rk] = list
	}
	c.ranges.Store(&m)
}

func (c *Cache) addPrefixLen(n int) {
	c.plenRef[n]++
	if c.plenRef[n] == 1 {
		c.storePrefixLens()
	}
}

func (c *Cache) dropPrefixLen(n int) {
	c.plenRef[n]--
	if c.plenRef[n] <= 0 {
		delete(c.plenRef, n)
		c.storePrefixLens()
	}
}

// storePrefixLens publishes a new bitmap of the prefix lengths in use;
// readers keep using the old one until they load again, so it is never
// modified in place.
func (c *Cache) storePrefixLens() {
	max := 0
	for n := range c.plenRef {
		max = maxInt(max, n)
	}
	bits := make([]uint64, max>>6+1)
	for n := range c.plenRef {
		bits[n>>6] |= 1 << (n & 63)
	}
	c.plens.Store(&bits)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Purge drops every entry of generations other than keep: after a plugin
// set changes, old answers can never hit again and only cost memory.
func (c *Cache) Purge(keep uint64) {
	c.imu.Lock()
	defer c.imu.Unlock()
	for _, e := range c.ring {
		if e != nil && e.key.gen != keep {
			c.remove(e)
		}
	}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{Inserts: c.inserts.Load(), Evictions: c.evictions.Load(), Expired: c.expired.Load()}
	for i := range c.hits {
		s.Hits += c.hits[i].n.Load()
		s.Misses += c.misses[i].n.Load()
	}
	c.imu.Lock()
	s.Entries = c.n
	c.imu.Unlock()
	return s
}

// Package cache is the host's scoped decision cache: it stores plugin
// answers at the scope the plugin claimed (exact object, path prefix, port
// range or any object; one zone and state, one zone, or every subject) and
// answers later requests that fall inside a stored scope.
//
// Hits take a read lock, do a handful of map lookups and set an atomic
// reference bit; they never allocate. The cache is bounded: inserting into a
// full cache evicts by CLOCK (second chance), and expired entries are
// dropped when the hand passes them. It imports only abi and the standard
// library; it knows nothing of plugins or processes.
package cache

import (
	"sort"
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
}

// Subject identifies the requester at the three granularities a scope can
// name. ZoneState must encode the zone and every plugin's state without
// ambiguity; the host computes it once per process.
type Subject struct {
	Zone      string
	ZoneState string
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
	val     Value
	expires int64 // clock nanoseconds
	ref     atomic.Bool
	slot    int // index in ring
	lo, hi  uint16
}

// Cache is safe for concurrent use.
type Cache struct {
	mu      sync.RWMutex
	max     int
	m       map[key]*entry
	ranges  map[rangeKey][]*entry
	ring    []*entry // CLOCK ring; nil slots are free
	free    []int
	hand    int
	dims    [3][4]int   // live entries per (subject dim, object dim)
	plens   []int       // distinct prefix lengths in use, descending
	plenRef map[int]int // entries per prefix length

	hits, misses, inserts, evictions, expired atomic.Uint64
}

// New returns a cache holding at most max entries (at least 1).
func New(max int) *Cache {
	if max < 1 {
		max = 1
	}
	return &Cache{
		max: max, m: make(map[key]*entry, max), ranges: make(map[rangeKey][]*entry),
		ring: make([]*entry, 0, max), plenRef: make(map[int]int),
	}
}

// Lookup returns the value of a live entry whose scope holds req for a
// subject s under plugin generation gen.
func (c *Cache) Lookup(gen uint64, s *Subject, req *abi.DecideRequest, now int64) (*Value, bool) {
	c.mu.RLock()
	e := c.find(gen, s, req, now)
	c.mu.RUnlock()
	if e == nil {
		c.misses.Add(1)
		return nil, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	c.hits.Add(1)
	return &e.val, true
}

func (c *Cache) find(gen uint64, s *Subject, req *abi.DecideRequest, now int64) *entry {
	objKind := req.Op.Object()
	for sd := abi.SubjectZoneState; sd <= abi.SubjectAll; sd++ {
		d := &c.dims[sd]
		if d[0]+d[1]+d[2]+d[3] == 0 {
			continue
		}
		var subj string
		switch sd {
		case abi.SubjectZoneState:
			subj = s.ZoneState
		case abi.SubjectZone:
			subj = s.Zone
		}
		k := key{gen: gen, sdim: sd, op: req.Op, subj: subj}
		if d[abi.ObjectExact] > 0 {
			k.odim = abi.ObjectExact
			k.obj, k.fs, k.proto, k.port, k.addr, k.target = req.Object, req.FS, req.Proto, req.Port, req.Addr, req.TargetZone
			if e := c.live(&k, now); e != nil {
				return e
			}
			k.port, k.addr, k.target = 0, [16]byte{}, ""
		}
		if d[abi.ObjectPrefix] > 0 && (objKind == abi.ObjectPath || objKind == abi.ObjectKey) {
			k.odim, k.fs, k.proto = abi.ObjectPrefix, req.FS, 0
			for _, n := range c.plens {
				if n > len(req.Object) {
					continue
				}
				k.obj = req.Object[:n]
				if e := c.live(&k, now); e != nil {
					return e
				}
			}
		}
		if d[abi.ObjectPortRange] > 0 && objKind == abi.ObjectEndpoint {
			for _, e := range c.ranges[rangeKey{gen, sd, req.Op, req.Proto, subj}] {
				if req.Port >= e.lo && req.Port <= e.hi && now < e.expires {
					return e
				}
			}
		}
		if d[abi.ObjectAny] > 0 {
			k = key{gen: gen, sdim: sd, odim: abi.ObjectAny, op: req.Op, subj: subj}
			if e := c.live(&k, now); e != nil {
				return e
			}
		}
	}
	return nil
}

func (c *Cache) live(k *key, now int64) *entry {
	e := c.m[*k]
	if e == nil || now >= e.expires {
		return nil
	}
	return e
}

// Insert stores v for the scope v.Scope around req. Scopes with a zero TTL
// are not stored. The caller has checked the scope against req
// (abi.DecideResponse.CheckScope).
func (c *Cache) Insert(gen uint64, s *Subject, req *abi.DecideRequest, v Value, now int64) {
	sc := v.Scope
	if sc.TTLMillis == 0 {
		return
	}
	e := &entry{val: v, expires: now + int64(sc.TTLMillis)*1e6}
	k := key{gen: gen, sdim: sc.Subject, odim: sc.Object, op: req.Op}
	switch sc.Subject {
	case abi.SubjectZoneState:
		k.subj = s.ZoneState
	case abi.SubjectZone:
		k.subj = s.Zone
	}
	switch sc.Object {
	case abi.ObjectExact:
		k.obj, k.fs, k.proto, k.port, k.addr, k.target = req.Object, req.FS, req.Proto, req.Port, req.Addr, req.TargetZone
	case abi.ObjectPrefix:
		k.obj, k.fs = req.Object[:sc.PrefixLen], req.FS
	case abi.ObjectPortRange:
		// Ranges live in c.ranges; the map key only makes the entry
		// unique so that eviction and replacement work uniformly.
		k.proto, k.port, k.addr = req.Proto, sc.PortLo, [16]byte{0: byte(sc.PortHi), 1: byte(sc.PortHi >> 8)}
		e.lo, e.hi = sc.PortLo, sc.PortHi
	}
	e.key = k

	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[k]; old != nil {
		c.remove(old)
	}
	for len(c.m) >= c.max {
		c.evictOne(now)
	}
	c.m[k] = e
	if len(c.free) > 0 {
		e.slot = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		c.ring[e.slot] = e
	} else {
		e.slot = len(c.ring)
		c.ring = append(c.ring, e)
	}
	c.dims[k.sdim][k.odim]++
	switch k.odim {
	case abi.ObjectPrefix:
		c.addPrefixLen(len(k.obj))
	case abi.ObjectPortRange:
		rk := rangeKey{gen, k.sdim, k.op, k.proto, k.subj}
		c.ranges[rk] = append(c.ranges[rk], e)
	}
	c.inserts.Add(1)
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

func (c *Cache) remove(e *entry) {
	delete(c.m, e.key)
	c.ring[e.slot] = nil
	c.free = append(c.free, e.slot)
	c.dims[e.key.sdim][e.key.odim]--
	switch e.key.odim {
	case abi.ObjectPrefix:
		c.dropPrefixLen(len(e.key.obj))
	case abi.ObjectPortRange:
		k := e.key
		rk := rangeKey{k.gen, k.sdim, k.op, k.proto, k.subj}
		list := c.ranges[rk]
		for i, x := range list {
			if x == e {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(c.ranges, rk)
		} else {
			c.ranges[rk] = list
		}
	}
}

func (c *Cache) addPrefixLen(n int) {
	c.plenRef[n]++
	if c.plenRef[n] == 1 {
		c.plens = append(c.plens, n)
		sort.Sort(sort.Reverse(sort.IntSlice(c.plens)))
	}
}

func (c *Cache) dropPrefixLen(n int) {
	c.plenRef[n]--
	if c.plenRef[n] > 0 {
		return
	}
	delete(c.plenRef, n)
	for i, x := range c.plens {
		if x == n {
			c.plens = append(c.plens[:i], c.plens[i+1:]...)
			return
		}
	}
}

// Purge drops every entry of generations other than keep: after a plugin
// set changes, old answers can never hit again and only cost memory.
func (c *Cache) Purge(keep uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.ring {
		if e != nil && e.key.gen != keep {
			c.remove(e)
		}
	}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	n := len(c.m)
	c.mu.RUnlock()
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Inserts: c.inserts.Load(),
		Evictions: c.evictions.Load(), Expired: c.expired.Load(), Entries: n,
	}
}

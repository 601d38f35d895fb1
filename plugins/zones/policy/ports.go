package policy

import (
	"slices"
	"strconv"
	"strings"
)

// portSet is a set of allowed ports as its runs of consecutive ports, in
// order: a lookup then answers with the run or the gap around a port
// directly, which is what a port-range scope claims.
type portSet []portRun

// portRun is lo..hi, inclusive.
type portRun struct{ lo, hi uint16 }

func newPortSet(ports []uint16) portSet {
	s := slices.Clone(ports)
	slices.Sort(s)
	s = slices.Compact(s)
	var runs portSet
	for _, p := range s {
		if n := len(runs); n > 0 && runs[n-1].hi+1 == p {
			runs[n-1].hi = p
		} else {
			runs = append(runs, portRun{p, p})
		}
	}
	return runs
}

// lookup reports whether port is in the set and the widest range around it
// in which membership is the same, which is what a port-range scope may
// claim.
func (s portSet) lookup(port uint16) (in bool, lo, hi uint16) {
	// The first run that does not end before port.
	i, j := 0, len(s)
	for i < j {
		if m := int(uint(i+j) >> 1); s[m].hi < port {
			i = m + 1
		} else {
			j = m
		}
	}
	if i < len(s) && s[i].lo <= port {
		return true, s[i].lo, s[i].hi
	}
	lo, hi = 0, 65535
	if i > 0 {
		lo = s[i-1].hi + 1
	}
	if i < len(s) {
		hi = s[i].lo - 1
	}
	return false, lo, hi
}

// String lists the set for reasons, joining runs: "25, 53, 80-82".
func (s portSet) String() string {
	if len(s) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(int(r.lo)))
		if r.hi > r.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(r.hi)))
		}
	}
	return b.String()
}

package policy

import (
	"slices"
	"strconv"
	"strings"
)

// portSet is a sorted, duplicate-free list of allowed ports.
type portSet []uint16

func newPortSet(ports []uint16) portSet {
	s := slices.Clone(ports)
	slices.Sort(s)
	return slices.Compact(s)
}

// lookup reports whether port is in the set and the widest range around it
// in which membership is the same, which is what a port-range scope may
// claim.
func (s portSet) lookup(port uint16) (in bool, lo, hi uint16) {
	i, found := slices.BinarySearch(s, port)
	if found {
		lo, hi = port, port
		for j := i; j > 0 && s[j-1] == lo-1; j-- {
			lo--
		}
		for j := i; j+1 < len(s) && s[j+1] == hi+1; j++ {
			hi++
		}
		return true, lo, hi
	}
	lo, hi = 0, 65535
	if i > 0 {
		lo = s[i-1] + 1
	}
	if i < len(s) {
		hi = s[i] - 1
	}
	return false, lo, hi
}

// String lists the set for reasons, joining runs: "25, 53, 80-82".
func (s portSet) String() string {
	if len(s) == 0 {
		return "none"
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(int(s[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(s[j])))
		}
		i = j + 1
	}
	return b.String()
}

package policy

import (
	"testing"

	"lineage.dev/lineage/abi"
)

// TEMPORARY
var sinkI, sinkJ int
var sinkB bool
var sinkR abi.DecideResponse

func BenchmarkParts(b *testing.B) {
	p := mustNew(b, DefaultConfig())
	o := benchPath
	var f0 pathObj
	f0.parse(o)
	g := &p.priv.groups[0]
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			var f pathObj
			sinkB = f.parse(o)
		}
	})
	b.Run("firstUnder", func(b *testing.B) {
		for b.Loop() {
			sinkI, sinkJ = g.firstUnder(&f0, true)
		}
	})
	b.Run("private", func(b *testing.B) {
		for b.Loop() {
			sinkI, sinkJ = p.private(&f0)
		}
	})
	b.Run("inSystem", func(b *testing.B) {
		for b.Loop() {
			sinkB, sinkJ = p.inSystem(&f0, abi.FSLocal)
		}
	})
	req := abi.DecideRequest{Op: abi.OpFileRead, Zone: ZoneGuarded, State: "1i:x", Object: o}
	b.Run("fileRead", func(b *testing.B) {
		for b.Loop() {
			sinkR = p.fileRead(&req, zoneGuarded)
		}
	})
	b.Run("Decide", func(b *testing.B) {
		for b.Loop() {
			sinkR = p.Decide(&req)
		}
	})
}

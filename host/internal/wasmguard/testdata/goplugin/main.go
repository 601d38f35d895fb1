// Command goplugin is a tiny Go-compiled guest for the wasmguard tests.
// The tests build it themselves (the .wasm is not committed), with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
package main

// add adds by appending to a slice and summing it, so that the call runs
// through loops and the runtime's allocator, not just an i32.add.
//
//go:wasmexport add
func add(a, b int32) int32 {
	var ones []int32
	for i := int32(0); i < b; i++ {
		ones = append(ones, 1)
	}
	for _, v := range ones {
		a += v
	}
	return a
}

var sink int

// spin never returns; the tests interrupt it.
//
//go:wasmexport spin
func spin() {
	for {
		sink++
	}
}

// mix runs n rounds of xorshift: a loop that neither calls nor allocates,
// for the benchmarks.
//
//go:wasmexport mix
func mix(n int32) int32 {
	x := uint32(2463534242)
	for i := int32(0); i < n; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
	}
	return int32(x)
}

// recurse recurses n calls deep in Go, for the depth limit tests.
//
//go:wasmexport recurse
func recurse(n int32) int32 { return down(n) }

//go:noinline
func down(n int32) int32 {
	if n <= 0 {
		return 0
	}
	return down(n-1) + 1
}

func main() {}

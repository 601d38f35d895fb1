//go:build wasip1

package lineage

import (
	"unsafe"

	"lineage.dev/lineage/abi"
)

// buffer is the plugin's single I/O buffer (ABI: lineage_buffer). The host
// writes each request into it and reads each answer from it, so the guest
// needs no allocator export.
var buffer [abi.MinBufferSize]byte

var dispatcher Dispatcher

//go:wasmexport lineage_buffer
func lineageBuffer() uint32 { return uint32(uintptr(unsafe.Pointer(&buffer[0]))) }

//go:wasmexport lineage_buffer_size
func lineageBufferSize() uint32 { return uint32(len(buffer)) }

//go:wasmexport lineage_init
func lineageInit(n uint32) int32 {
	dispatcher.Plugin = registered
	return dispatcher.Init(buffer[:], n)
}

//go:wasmexport lineage_classify
func lineageClassify(n uint32) int32 { return dispatcher.Classify(buffer[:], n) }

//go:wasmexport lineage_decide
func lineageDecide(n uint32) int32 { return dispatcher.Decide(buffer[:], n) }

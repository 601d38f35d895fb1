//go:build !linux

package host

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is wazero's default off Linux (see memory_linux.go).
func memoryAllocator() experimental.MemoryAllocator { return nil }

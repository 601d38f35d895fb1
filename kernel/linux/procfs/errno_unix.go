//go:build unix

package procfs

import "syscall"

// errESRCH: reading a stat file of a process that just exited.
var errESRCH error = syscall.ESRCH

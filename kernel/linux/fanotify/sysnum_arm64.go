//go:build linux && arm64

package fanotify

// arm64 has no open or creat (distinct impossible numbers keep the
// switch in Event.Write valid).
const (
	sysOpen           = -1
	sysCreat          = -2
	sysOpenat         = 56
	sysOpenByHandleAt = 265
	sysOpenat2        = 437
	sysExecve         = 221
	sysExecveat       = 281
)

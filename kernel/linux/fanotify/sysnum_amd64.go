//go:build linux && amd64

package fanotify

const (
	sysOpen           = 2
	sysCreat          = 85
	sysOpenat         = 257
	sysOpenByHandleAt = 304
	sysOpenat2        = 437
	sysExecve         = 59
	sysExecveat       = 322
)

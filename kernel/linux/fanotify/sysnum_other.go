//go:build linux && !amd64 && !arm64

package fanotify

// Other architectures: open intent unknown (Event.Write reports so).
const (
	sysOpen           = -1
	sysCreat          = -2
	sysOpenat         = -3
	sysOpenByHandleAt = -4
	sysOpenat2        = -5
	sysExecve         = -6
	sysExecveat       = -7
)

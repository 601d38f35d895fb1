//go:build unix

package host

import (
	"fmt"
	"os"
	"syscall"
)

// checkCacheDir refuses a compilation cache another user could write:
// the host executes the machine code it finds there.
func checkCacheDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for d := dir; ; {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not by this user (%d)", d, st.Uid, os.Geteuid())
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s is writable by group or others (mode %v)", d, fi.Mode().Perm())
		}
		parent := parentDir(d)
		if parent == d {
			return nil
		}
		d = parent
	}
}

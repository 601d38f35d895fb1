//go:build !unix

package host

import "os"

// checkCacheDir creates the cache folder; ownership checks are Unix-only.
func checkCacheDir(dir string) error { return os.MkdirAll(dir, 0o700) }

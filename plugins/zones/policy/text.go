package policy

import (
	"unicode/utf8"
)

// maxOrigin bounds the origin name kept in a process's state: base names
// are at most 255 bytes on common filesystems, and the state must stay well
// under abi.MaxState.
const maxOrigin = 255

// badRune reports runes that must not reach reasons or logs verbatim:
// control characters, and the bidirectional overrides that let a file name
// display as something else ("Trojan Source").
func badRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// clean reports whether s is valid UTF-8 without bad runes, i.e. whether
// sanitize(s, len(s)) would return s unchanged. It does not allocate.
func clean(s string) bool {
	i := 0
	for i < len(s) && 0x20 <= s[i] && s[i] < 0x7f { // printable ASCII, without decoding
		i++
	}
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || badRune(r) {
			return false
		}
		i += n
	}
	return true
}

// sanitize makes a file name safe to embed in a reason and a state: invalid
// bytes and bad runes become U+FFFD, and a name longer than max bytes is cut
// on a rune boundary and ends in "…".
func sanitize(s string, max int) string {
	if !clean(s) {
		b := make([]byte, 0, len(s))
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 || badRune(r) {
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
			i += n
		}
		s = string(b)
	}
	if len(s) > max {
		const ellipsis = "…"
		s = clip(s, max-len(ellipsis)) + ellipsis
	}
	return s
}

// clip cuts s to at most max bytes on a rune boundary, so valid UTF-8
// stays valid.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// baseName returns what follows the last / or \ of an executable path: the
// name guarded_apps lists, whichever system the path comes from.
func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' || p[i] == '\\' {
			return p[i+1:]
		}
	}
	return p
}

// lower folds ASCII letters; the policy's case-insensitivity (Windows paths,
// registry keys, names) is ASCII-only, which is what folding by byte allows
// without allocating. It looks the byte up rather than testing it, because
// it runs in the loops that compare names, and branches are dear there in
// WebAssembly.
func lower(b byte) byte { return lowerTab[b] }

var lowerTab = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

// equalFold compares s and t ignoring ASCII case.
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(t[i]) {
			return false
		}
	}
	return true
}

// lowerString folds s with lower; used when compiling the config.
func lowerString(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

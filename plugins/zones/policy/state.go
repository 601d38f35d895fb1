package policy

// state is what the policy remembers about a process between classify and
// decide. Its encoding is the plugin state the host stores:
//
//	""                      no flags, no origin (the usual system process)
//	"1" [i] [u] ":" origin  version 1, flags, then the origin name
//
// i: the zone was inherited from the creator; u: the origin (this process,
// or the ancestor named) was classified without knowing its ancestry,
// because it predates the host. origin is the executable base name of the
// process that made the chain guarded or untrusted, sanitized and at most
// maxOrigin bytes. The version digit lets a later plugin generation tell
// states it wrote from states an older one left in the host's table.
type state struct {
	inherited bool
	unknown   bool
	origin    string
}

func (s state) encode() string {
	if s == (state{}) {
		return ""
	}
	return statePrefix[b2i(s.inherited)][b2i(s.unknown)] + s.origin
}

// statePrefix is the version and the flags, [inherited][unknown].
var statePrefix = [2][2]string{{"1:", "1u:"}, {"1i:", "1iu:"}}

// parseState decodes s without allocating. It accepts exactly what encode
// produces, so a state that parses re-encodes to itself; anything else
// (another plugin's state, a truncated or forged one) is reported as not
// ok and explained as "origin not recorded".
func parseState(s string) (state, bool) {
	if s == "" {
		return state{}, true
	}
	if len(s) < 2 || s[0] != '1' {
		return state{}, false
	}
	var st state
	i := 1
	if s[i] == 'i' {
		st.inherited = true
		i++
	}
	if i < len(s) && s[i] == 'u' {
		st.unknown = true
		i++
	}
	if i >= len(s) || s[i] != ':' {
		return state{}, false
	}
	st.origin = s[i+1:]
	if st == (state{}) || len(st.origin) > maxOrigin || !clean(st.origin) {
		return state{}, false
	}
	return st, true
}

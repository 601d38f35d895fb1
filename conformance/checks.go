package conformance

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

func entryList(e uint32) string {
	var s []string
	if e&abi.EntryClassify != 0 {
		s = append(s, "classify")
	}
	if e&abi.EntryDecide != 0 {
		s = append(s, "decide")
	}
	return strings.Join(s, ",")
}

func (s *suite) decides() bool    { return s.meta.Entry&abi.EntryDecide != 0 }
func (s *suite) classifies() bool { return s.meta.Entry&abi.EntryClassify != 0 }

// caller makes typed calls on a session, replacing it after a failure so
// that one failed call does not end a check.
type caller struct {
	s    *suite
	sess *host.Session
	buf  []byte
	// latencies of successful calls, by export, for the measure check
	lat map[string][]time.Duration
	// failures in a row and in all: after maxFailures in a row, or
	// maxTotalFailures, or checkBudget of wall time, the caller gives up,
	// so a plugin that overruns or traps on every call (or every other
	// one) fails a check in seconds instead of hours of deadlines and
	// restarts.
	failures, total int
	started         time.Time
}

const (
	maxFailures      = 3
	maxTotalFailures = 50
	checkBudget      = 3 * time.Minute
)

// errGaveUp wraps every reason a caller stops calling.
var errGaveUp = errors.New("not called")

func (s *suite) newCaller() (*caller, error) {
	sess, err := s.session()
	if err != nil {
		return nil, fmt.Errorf("starting an instance: %s", describe(err))
	}
	return &caller{s: s, sess: sess, buf: make([]byte, abi.MaxMessage), lat: map[string][]time.Duration{}, started: time.Now()}, nil
}

func (c *caller) close() {
	if c.sess != nil {
		c.sess.Close(c.s.ctx)
	}
}

// raw calls export with req and length n; after a failed call the next
// one gets a fresh instance.
func (c *caller) raw(export string, req []byte, n uint32) (host.Answer, error) {
	switch {
	case c.failures >= maxFailures:
		return host.Answer{}, fmt.Errorf("%w: the plugin failed %d calls in a row", errGaveUp, maxFailures)
	case c.total >= maxTotalFailures:
		return host.Answer{}, fmt.Errorf("%w: the plugin failed %d calls", errGaveUp, c.total)
	case time.Since(c.started) > checkBudget:
		return host.Answer{}, fmt.Errorf("%w: the check ran out of its %v", errGaveUp, checkBudget)
	case c.s.ctx.Err() != nil:
		return host.Answer{}, fmt.Errorf("%w: %v", errGaveUp, c.s.ctx.Err())
	}
	if c.sess == nil {
		sess, err := c.s.session()
		if err != nil {
			return host.Answer{}, fmt.Errorf("restarting the instance: %s", describe(err))
		}
		c.sess = sess
	}
	a, err := c.sess.Call(c.s.ctx, export, req, n)
	if err != nil {
		var ce *host.CallError
		if errors.As(err, &ce) {
			c.sess.Close(c.s.ctx)
			c.sess = nil
			c.failures++
			c.total++
		}
		return a, err
	}
	c.failures = 0
	c.lat[export] = append(c.lat[export], a.Elapsed)
	return a, nil
}

func callFailed(err error) error {
	if errors.Is(err, errGaveUp) {
		return err
	}
	return fmt.Errorf("call failed: %s", describe(err))
}

// stop records err and reports whether the check should end: the caller
// gave up on the plugin.
func (c *check) stop(err error) bool {
	if errors.Is(err, errGaveUp) || c.gaveUp {
		if !c.gaveUp {
			c.failf("stopped: %v", err)
		}
		c.gaveUp = true
		return true
	}
	return false
}

// typed sends the request encode writes to export and hands the answer
// to decode; any failure is an error that says what went wrong.
func (c *caller) typed(export string, encode func([]byte) (int, error), decode func([]byte) error) error {
	n, err := encode(c.buf)
	if err != nil {
		return fmt.Errorf("suite bug: encoding the request: %v", err)
	}
	a, err := c.raw(export, c.buf[:n], uint32(n))
	if err != nil {
		return callFailed(err)
	}
	if a.RC < 0 {
		return fmt.Errorf("answered error code %s: %s", abi.ErrorCode(-a.RC), a.Message)
	}
	if a.Bytes == nil {
		return fmt.Errorf("answer length %d exceeds the %d-byte buffer", a.RC, c.sess.BufferSize())
	}
	if err := decode(a.Bytes); err != nil {
		return fmt.Errorf("malformed answer: %v", err)
	}
	return nil
}

// decide sends req and decodes and checks the answer.
func (c *caller) decide(req *abi.DecideRequest) (abi.DecideResponse, error) {
	var resp abi.DecideResponse
	err := c.typed(abi.ExportDecide, req.Encode, func(b []byte) error {
		if err := resp.Decode(b, req.Op); err != nil {
			return err
		}
		return resp.CheckScope(req)
	})
	return resp, err
}

func (c *caller) classify(req *abi.ClassifyRequest) (abi.ClassifyResponse, error) {
	var resp abi.ClassifyResponse
	err := c.typed(abi.ExportClassify, req.Encode, resp.Decode)
	return resp, err
}

func reqString(r *abi.DecideRequest) string {
	s := fmt.Sprintf("%s zone=%q state=%q", r.Op, r.Zone, r.State)
	switch r.Op.Object() {
	case abi.ObjectEndpoint:
		s += fmt.Sprintf(" proto=%d addr=%s port=%d", r.Proto, netip.AddrFrom16(r.Addr).Unmap(), r.Port)
	case abi.ObjectProcess:
		s += fmt.Sprintf(" target=%q target_zone=%q", r.Object, r.TargetZone)
	default:
		s += fmt.Sprintf(" object=%q fs=%s", r.Object, r.FS)
	}
	return s
}

func answerString(r abi.DecideResponse) string {
	sc := r.Scope
	s := fmt.Sprintf("%s (rule %q) scope subject=%d object=%d", r.Verdict, r.Rule, sc.Subject, sc.Object)
	switch sc.Object {
	case abi.ObjectPrefix:
		s += fmt.Sprintf(" prefix_len=%d", sc.PrefixLen)
	case abi.ObjectPortRange:
		s += fmt.Sprintf(" ports=%d-%d", sc.PortLo, sc.PortHi)
	}
	return s + fmt.Sprintf(" ttl=%dms", sc.TTLMillis)
}

// goldenRequests returns the valid golden decide and classify requests.
func goldenRequests() (decide []abi.DecideRequest, classify []abi.ClassifyRequest, invalid []abi.Golden, err error) {
	g, err := abi.GoldenVectors()
	if err != nil {
		return nil, nil, nil, err
	}
	for _, v := range g {
		switch {
		case v.Type == "decide_request" && v.Valid:
			var r abi.DecideRequest
			if err := r.Decode(v.Bytes); err != nil {
				return nil, nil, nil, fmt.Errorf("golden %s: %v", v.Name, err)
			}
			decide = append(decide, r)
		case v.Type == "classify_request" && v.Valid:
			var r abi.ClassifyRequest
			if err := r.Decode(v.Bytes); err != nil {
				return nil, nil, nil, fmt.Errorf("golden %s: %v", v.Name, err)
			}
			classify = append(classify, r)
		case !v.Valid && (v.Type == "decide_request" || v.Type == "classify_request"):
			invalid = append(invalid, v)
		}
	}
	return decide, classify, invalid, nil
}

// setup loads the golden requests and starts a caller for a check; on
// failure the check says why and ok is false.
func (s *suite) setup(c *check) (dreqs []abi.DecideRequest, creqs []abi.ClassifyRequest, invalid []abi.Golden, cl *caller, ok bool) {
	dreqs, creqs, invalid, err := goldenRequests()
	if err == nil {
		cl, err = s.newCaller()
	}
	if err != nil {
		c.failf("%v", err)
		return nil, nil, nil, nil, false
	}
	return dreqs, creqs, invalid, cl, true
}

func (s *suite) vectors() {
	s.do("vectors", true, func(c *check) {
		dreqs, creqs, _, cl, ok := s.setup(c)
		if !ok {
			return
		}
		defer cl.close()
		sent, skipped := 0, 0
		if s.decides() {
			for i := range dreqs {
				r := &dreqs[i]
				if !s.meta.Handles(r.Op) {
					skipped++
					continue
				}
				sent++
				resp, err := cl.decide(r)
				if c.stop(err) {
					break
				}
				if err != nil {
					c.failf("decide %s: %v", reqString(r), err)
					continue
				}
				if resp.Verdict == abi.Deny && resp.Reason == "" {
					c.failf("decide %s: a deny without a reason", reqString(r))
				}
			}
		}
		if s.classifies() {
			for i := range creqs {
				sent++
				_, err := cl.classify(&creqs[i])
				if c.stop(err) {
					break
				}
				if err != nil {
					c.failf("classify %q: %v", creqs[i].Exe, err)
				}
			}
		}
		c.summary = fmt.Sprintf("%d golden requests answered well-formed", sent)
		if skipped > 0 {
			c.summary += fmt.Sprintf(" (%d for ops the plugin does not declare, not sent)", skipped)
		}
		if c.fail {
			c.summary = fmt.Sprintf("golden requests got bad answers: %s", c.evidence[0])
		}
	})
}

// subject is a process as the plugin sees it.
type subject struct {
	zone, state, exe string
}

// exes are the executables lineages are generated from: system and user
// space on Linux and Windows, guarded applications of the reference
// policy, and a network share.
var exes = []struct {
	path string
	fs   abi.FSKind
}{
	{"/usr/bin/bash", abi.FSLocal},
	{"/usr/bin/python3", abi.FSLocal},
	{"/usr/bin/thunderbird", abi.FSLocal},
	{"/usr/bin/firefox", abi.FSLocal},
	{"/usr/bin/evince", abi.FSLocal},
	{"/home/bob/bin/tool", abi.FSLocal},
	{"/tmp/payload", abi.FSLocal},
	{"/media/usb/run.sh", abi.FSRemovable},
	{`C:\Windows\explorer.exe`, abi.FSLocal},
	{`C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`, abi.FSLocal},
	{`C:\Program Files\Mozilla Firefox\firefox.exe`, abi.FSLocal},
	{`C:\Program Files (x86)\Adobe\Acrobat Reader DC\Reader\AcroRd32.exe`, abi.FSLocal},
	{`C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, abi.FSLocal},
	{`C:\Users\bob\AppData\Local\Temp\payload.exe`, abi.FSLocal},
	{`\\server\share\tool.exe`, abi.FSNetwork},
}

// objects returns sample requests (no subject) for op.
func objects(op abi.Op) []abi.DecideRequest {
	var out []abi.DecideRequest
	switch op.Object() {
	case abi.ObjectPath:
		for _, p := range []struct {
			path string
			fs   abi.FSKind
		}{
			{"/usr/bin/python3", abi.FSLocal}, {"/etc/passwd", abi.FSLocal},
			{"/usr/lib/x86_64-linux-gnu/libc.so.6", abi.FSLocal},
			{"/home/bob/Documents/report.txt", abi.FSLocal}, {"/tmp/x/payload.so", abi.FSLocal},
			{"/home/bob/.ssh/id_rsa", abi.FSLocal}, {"/mnt/share/tool", abi.FSNetwork},
			{`C:\Windows\System32\evil.dll`, abi.FSLocal},
			{`C:\Users\bob\AppData\Local\Temp\payload.exe`, abi.FSLocal},
			{`C:\Users\bob\Documents\Private\secret.txt`, abi.FSLocal},
			{`\\server\share\tool.exe`, abi.FSNetwork}, {`E:\setup.exe`, abi.FSRemovable},
		} {
			out = append(out, abi.DecideRequest{Op: op, Object: p.path, FS: p.fs})
		}
	case abi.ObjectKey:
		for _, k := range []string{
			`HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`,
			`HKLM\Software\Vendor\Setting`, `HKCU\Software\Vendor\Settings\Theme`,
			`HKCU\Environment\Path`, `HKCU\Software\Classes\CLSID\{0000}\InprocServer32`,
		} {
			out = append(out, abi.DecideRequest{Op: op, Object: k})
		}
	case abi.ObjectEndpoint:
		for _, e := range []struct {
			proto abi.Proto
			port  uint16
		}{{abi.ProtoTCP, 443}, {abi.ProtoTCP, 25}, {abi.ProtoTCP, 4444}, {abi.ProtoTCP, 8080},
			{abi.ProtoUDP, 53}, {abi.ProtoUDP, 123}, {abi.ProtoUDP, 9999}} {
			for _, a := range []string{"203.0.113.7", "10.1.2.3", "127.0.0.1", "2001:db8::1"} {
				r := abi.DecideRequest{Op: op, Proto: e.proto, Port: e.port, Addr: netip.MustParseAddr(a).As16()}
				out = append(out, r)
			}
		}
	case abi.ObjectProcess:
		for _, t := range []string{`C:\Windows\System32\lsass.exe`, "/usr/sbin/sshd", "/home/bob/bin/tool"} {
			for _, z := range []string{"system", "guarded", "untrusted"} {
				out = append(out, abi.DecideRequest{Op: op, Object: t, TargetZone: z})
			}
		}
	}
	return out
}

// corpus returns the sample requests of every op the plugin declares.
func (s *suite) corpus() []abi.DecideRequest {
	var out []abi.DecideRequest
	for _, op := range abi.Ops() {
		if s.meta.Handles(op) {
			out = append(out, objects(op)...)
		}
	}
	return out
}

// lineages generates processes the way the host would create them: roots
// of unknown ancestry, then children of each process whose launch the
// plugin allows. It returns the subjects and the creator -> child edges.
type edge struct {
	parent, child int
	exe           string
	inPlace       bool
}

func (s *suite) lineages(cl *caller, c *check) ([]subject, []edge) {
	if !s.classifies() {
		return nil, nil
	}
	const maxSubjects, maxDepth = 400, 4
	var subs []subject
	var edges []edge
	index := map[subject]int{}
	add := func(sub subject) (int, bool) {
		if i, ok := index[sub]; ok {
			return i, false
		}
		if len(subs) >= maxSubjects {
			return -1, false
		}
		index[sub] = len(subs)
		subs = append(subs, sub)
		return len(subs) - 1, true
	}
	zoneOf := func(r abi.ClassifyResponse) string {
		if r.Classified {
			return r.Zone
		}
		return "untrusted" // the host's default unclassified zone
	}
	var frontier []int
	for _, e := range exes {
		resp, err := cl.classify(&abi.ClassifyRequest{Flags: abi.FlagCreatorUnknown, Exe: e.path, FS: e.fs})
		if c.stop(err) {
			return nil, nil
		}
		if err != nil {
			c.failf("classify %q (creator unknown): %v", e.path, err)
			continue
		}
		if i, ok := add(subject{zoneOf(resp), resp.State, e.path}); ok {
			frontier = append(frontier, i)
		}
	}
	for depth := 0; depth < maxDepth && len(frontier) > 0; depth++ {
		var next []int
		for _, pi := range frontier {
			p := subs[pi]
			for _, e := range exes {
				if s.decides() && s.meta.Handles(abi.OpProcessExec) {
					d, err := cl.decide(&abi.DecideRequest{Op: abi.OpProcessExec, Zone: p.zone, State: p.state, Object: e.path, FS: e.fs})
					if c.stop(err) {
						return nil, nil
					}
					if err != nil {
						c.failf("decide process.exec %q for zone %q: %v", e.path, p.zone, err)
						continue
					}
					if d.Verdict == abi.Deny {
						continue // the host would not let this child exist
					}
				}
				for _, inPlace := range []bool{false, true} {
					req := abi.ClassifyRequest{Exe: e.path, FS: e.fs, CreatorZone: p.zone, CreatorState: p.state, CreatorExe: p.exe}
					if inPlace {
						req.Flags = abi.FlagInPlace
					}
					resp, err := cl.classify(&req)
					if c.stop(err) {
						return nil, nil
					}
					if err != nil {
						c.failf("classify %q created by zone %q: %v", e.path, p.zone, err)
						continue
					}
					ci, isNew := add(subject{zoneOf(resp), resp.State, e.path})
					if ci < 0 {
						continue
					}
					edges = append(edges, edge{pi, ci, e.path, inPlace})
					if isNew {
						next = append(next, ci)
					}
				}
			}
		}
		frontier = next
	}
	return subs, edges
}

// rank orders verdicts by permissiveness: abstain lets the host's
// abstain verdict (allow by default) apply.
func rank(v abi.Verdict) int {
	switch v {
	case abi.Deny:
		return 0
	case abi.Abstain:
		return 1
	}
	return 2
}

func (s *suite) semantics() {
	var cl *caller
	var subs []subject
	var edges []edge
	answers := map[string]abi.DecideResponse{} // subject+request -> answer
	prepared := false
	prepare := func(c *check) bool {
		if prepared {
			if cl == nil {
				c.failf("not checked: no instance could be started for the semantic checks")
			}
			return cl != nil
		}
		prepared = true
		var err error
		if cl, err = s.newCaller(); err != nil {
			c.failf("%v", err)
			return false
		}
		subs, edges = s.lineages(cl, c)
		return true
	}
	defer func() {
		if cl != nil {
			cl.close()
		}
	}()
	corpus := s.corpus()
	ask := func(sub subject, r abi.DecideRequest) (abi.DecideResponse, error) {
		r.Zone, r.State = sub.zone, sub.state
		key := sub.zone + "\x00" + sub.state + "\x00" + reqString(&r)
		if a, ok := answers[key]; ok {
			return a, nil
		}
		a, err := cl.decide(&r)
		if err == nil {
			answers[key] = a
		}
		return a, err
	}
	s.do("semantics.inheritance", true, func(c *check) {
		if !prepare(c) {
			return
		}
		if !s.classifies() || !s.decides() {
			c.summary = "nothing to check: the plugin does not both classify and decide"
			return
		}
		compared, violations, errs := 0, 0, 0
	edges:
		for _, e := range edges {
			p, ch := subs[e.parent], subs[e.child]
			if p.zone == ch.zone && p.state == ch.state {
				continue
			}
			for _, r := range corpus {
				pa, err1 := ask(p, r)
				ca, err2 := ask(ch, r)
				if c.stop(err1) || c.stop(err2) {
					break edges
				}
				if err1 != nil || err2 != nil {
					errs++
					c.failf("%s: %v", reqString(&r), errors.Join(err1, err2))
					continue
				}
				compared++
				if rank(ca.Verdict) > rank(pa.Verdict) {
					violations++
					how := "started"
					if e.inPlace {
						how = "exec'd in place"
					}
					r.Zone, r.State = ch.zone, ch.state
					c.failf("%q %s by a %q process (state %q) is zone %q (state %q) and gets %s where its creator gets %s: %s",
						e.exe, how, p.zone, p.state, ch.zone, ch.state, ca.Verdict, pa.Verdict, reqString(&r))
				}
			}
		}
		c.summary = fmt.Sprintf("%d generated processes, %d creator->child edges, %d request comparisons", len(subs), len(edges), compared)
		switch {
		case violations > 0:
			c.summary = fmt.Sprintf("%d times a child is more permissive than its creator", violations)
		case c.fail:
			c.summary = "could not be checked: " + c.evidence[0]
		}
	})
	s.do("semantics.scopes", true, func(c *check) {
		if !prepare(c) {
			return
		}
		if !s.decides() {
			c.summary = "nothing to check: the plugin does not decide"
			return
		}
		if len(subs) == 0 {
			subs = decideOnlySubjects()
		}
		rng := rand.New(rand.NewPCG(s.o.Seed, 2))
		checked, violations, answered := 0, 0, 0
	subjects:
		for si, sub := range subs {
			for _, r := range corpus {
				a, err := ask(sub, r)
				if c.stop(err) {
					break subjects
				}
				if err != nil {
					r.Zone, r.State = sub.zone, sub.state
					c.failf("%s: %v", reqString(&r), err)
					continue
				}
				answered++
				if a.Scope.TTLMillis == 0 {
					continue // never cached: the scope claims nothing (SPEC 10.4)
				}
				for _, ns := range neighbourSubjects(subs, si, a.Scope.Subject, rng) {
					for _, nr := range neighbourObjects(r, a.Scope, corpus, rng) {
						na, err := ask(ns, nr)
						if c.stop(err) {
							break subjects
						}
						if err != nil {
							nr.Zone, nr.State = ns.zone, ns.state
							c.failf("%s: %v", reqString(&nr), err)
							continue
						}
						checked++
						if na.Verdict != a.Verdict {
							violations++
							r.Zone, r.State, nr.Zone, nr.State = sub.zone, sub.state, ns.zone, ns.state
							c.failf("answer %s to %s claims a scope holding %s, which gets %s", answerString(a), reqString(&r), reqString(&nr), answerString(na))
						}
					}
				}
			}
		}
		c.summary = fmt.Sprintf("%d requests sampled inside the claimed scopes of %d answers", checked, answered)
		switch {
		case violations > 0:
			c.summary = fmt.Sprintf("%d requests inside a claimed scope got another verdict", violations)
		case c.fail:
			c.summary = "could not be checked: " + c.evidence[0]
		}
	})
	s.do("semantics.ttl", true, func(c *check) {
		if !prepare(c) {
			return
		}
		if !s.decides() {
			c.summary = "nothing to check: the plugin does not decide"
			return
		}
		// The answers of semantics.scopes, from ask's memo when it ran.
		if len(subs) == 0 {
			subs = decideOnlySubjects()
		}
		var ttls []uint32
	loop:
		for _, sub := range subs {
			for _, r := range corpus {
				a, err := ask(sub, r)
				if c.stop(err) {
					break loop
				}
				if err != nil {
					c.failf("%s: %v", reqString(&r), err)
					continue
				}
				ttls = append(ttls, a.Scope.TTLMillis)
			}
		}
		zero := 0
		var max uint32
		for _, t := range ttls {
			if t > abi.MaxTTLMillis {
				c.failf("TTL %d ms, over the ABI's %d", t, abi.MaxTTLMillis)
			}
			if t == 0 {
				zero++
			}
			max = maxU32(max, t)
		}
		c.summary = fmt.Sprintf("%d answers: %d not cacheable (TTL 0), longest TTL %v", len(ttls), zero, time.Duration(max)*time.Millisecond)
	})
}

// decideOnlySubjects are the subjects for a plugin that does not classify:
// the reference zones and a few others, with and without state.
func decideOnlySubjects() []subject {
	var subs []subject
	for _, z := range []string{"system", "guarded", "untrusted", "user"} {
		subs = append(subs, subject{zone: z}, subject{zone: z, state: "s1"})
	}
	return subs
}

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// neighbourSubjects returns subjects inside a scope's subject dimension,
// the subject itself first.
func neighbourSubjects(subs []subject, self int, d abi.ScopeSubject, rng *rand.Rand) []subject {
	out := []subject{subs[self]}
	var pool []subject
	for i, s := range subs {
		if i == self || s.zone == subs[self].zone && s.state == subs[self].state {
			continue
		}
		switch d {
		case abi.SubjectZone:
			if s.zone == subs[self].zone {
				pool = append(pool, s)
			}
		case abi.SubjectAll:
			pool = append(pool, s)
		}
	}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return append(out, pool[:min(len(pool), 4)]...)
}

// neighbourObjects returns requests inside a scope's object dimension.
func neighbourObjects(r abi.DecideRequest, sc abi.Scope, corpus []abi.DecideRequest, rng *rand.Rand) []abi.DecideRequest {
	out := []abi.DecideRequest{r}
	switch sc.Object {
	case abi.ObjectPrefix:
		prefix := r.Object[:sc.PrefixLen]
		if !abi.IsSeparator(prefix[len(prefix)-1]) {
			// The whole object, not ending at a separator: the host
			// looks prefixes up at separators and at the object's end,
			// so this covers only the object itself (SPEC 10.1).
			break
		}
		sep := "/"
		if strings.Contains(prefix, `\`) {
			sep = `\`
		}
		for _, tail := range []string{"zz", "a" + sep + "b" + sep + "c.txt", "Z" + sep, ".hidden"} {
			n := r
			n.Object = prefix + tail
			if len(n.Object) <= abi.MaxObject {
				out = append(out, n)
			}
		}
	case abi.ObjectPortRange:
		for _, p := range []uint16{sc.PortLo, sc.PortHi, sc.PortLo + (sc.PortHi-sc.PortLo)/2} {
			n := r
			n.Port = p
			n.Addr[15] ^= byte(rng.Uint32()) // any address
			out = append(out, n)
		}
	case abi.ObjectAny:
		var pool []abi.DecideRequest
		for _, o := range corpus {
			if o.Op == r.Op {
				pool = append(pool, o)
			}
		}
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		out = append(out, pool[:min(len(pool), 4)]...)
	}
	return out
}

func (s *suite) determinism() {
	s.do("determinism", true, func(c *check) {
		dreqs, creqs, _, err := goldenRequests()
		if err != nil {
			c.failf("%v", err)
			return
		}
		type call struct {
			name   string
			export string
			bytes  []byte
			golden bool // gets an instance of its own for its fresh answer
		}
		var calls []call
		buf := make([]byte, abi.MaxMessage)
		golden := false
		addD := func(r abi.DecideRequest) {
			if s.decides() && s.meta.Handles(r.Op) {
				n, _ := r.Encode(buf)
				calls = append(calls, call{"decide " + reqString(&r), abi.ExportDecide, slices.Clone(buf[:n]), golden})
			}
		}
		golden = true
		for _, r := range dreqs {
			addD(r)
		}
		golden = false
		for _, r := range s.corpus() {
			for _, z := range []string{"system", "guarded", "untrusted"} {
				r.Zone = z
				addD(r)
			}
		}
		if s.classifies() {
			for _, r := range creqs {
				n, _ := r.Encode(buf)
				calls = append(calls, call{fmt.Sprintf("classify %q", r.Exe), abi.ExportClassify, slices.Clone(buf[:n]), true})
			}
		}
		if len(calls) == 0 {
			c.summary = "no requests to send"
			return
		}
		// Fresh answers: a new instance for each golden request, and one
		// more answering each of the sample requests once.
		fresh := make([]string, len(calls))
		var shared *host.Session
		defer func() {
			if shared != nil {
				shared.Close(s.ctx)
			}
		}()
		for i, cl := range calls {
			sess := shared
			if sess == nil || cl.golden {
				var err error
				if sess, err = s.session(); err != nil {
					c.failf("starting an instance: %s", describe(err))
					return
				}
			}
			a, err := sess.Call(s.ctx, cl.export, cl.bytes, uint32(len(cl.bytes)))
			switch {
			case cl.golden:
				sess.Close(s.ctx)
			case shared == nil:
				shared = sess
			}
			if err != nil {
				c.failf("%s on a fresh instance: %s", cl.name, describe(err))
				return
			}
			fresh[i] = fmt.Sprintf("rc=%d %x %s", a.RC, a.Bytes, a.Message)
		}
		sess, err := s.session()
		if err != nil {
			c.failf("starting an instance: %s", describe(err))
			return
		}
		defer sess.Close(s.ctx)
		// A garbage-collected guest's memory grows until its collector
		// reaches a steady state (a Go plugin that allocates on some
		// answers settles at about twice its initial heap, after tens of
		// thousands of calls), and only a leak grows for ever. So after
		// the first Calls calls, rounds of Calls calls run until one ends
		// with no growth; a guest still growing after maxRounds fails.
		const maxRounds = 20
		var mems []uint32
		k := 0
		callRound := func() bool {
			for end := k + s.o.Calls; k < end; k++ {
				i := k % len(calls)
				cl := calls[i]
				a, err := sess.Call(s.ctx, cl.export, cl.bytes, uint32(len(cl.bytes)))
				if err != nil {
					c.failf("call %d, %s: %s", k+1, cl.name, describe(err))
					return false
				}
				if got := fmt.Sprintf("rc=%d %x %s", a.RC, a.Bytes, a.Message); got != fresh[i] {
					c.failf("call %d, %s: answered %s, but %s on a fresh instance", k+1, cl.name, got, fresh[i])
					if len(c.evidence) >= maxEvidence {
						return false
					}
				}
			}
			mems = append(mems, sess.MemoryBytes())
			return !c.fail
		}
		mems = append(mems, sess.MemoryBytes())
		if !callRound() {
			return
		}
		for r := 0; r < maxRounds && mems[len(mems)-1] > mems[len(mems)-2]; r++ {
			if !callRound() {
				return
			}
		}
		var series []string
		for i, m := range mems {
			series = append(series, fmt.Sprintf("%d KiB after %d calls", m>>10, i*s.o.Calls))
		}
		c.notef("memory: %s", strings.Join(series, ", "))
		last, prev := mems[len(mems)-1], mems[len(mems)-2]
		c.summary = fmt.Sprintf("%d requests, each answered the same on fresh instances and over %d calls on one instance; memory %d KiB at start, stable at %d KiB",
			len(calls), k, mems[0]>>10, last>>10)
		if last > prev {
			c.failf("guest memory still grew after %d calls (%d to %d bytes in the last %d calls): a leak", k, prev, last, s.o.Calls)
			c.summary = c.evidence[len(c.evidence)-1]
		}
	})
}

func (s *suite) robustness() {
	s.do("robustness", true, func(c *check) {
		dreqs, creqs, invalid, cl, ok := s.setup(c)
		if !ok {
			return
		}
		defer cl.close()
		rng := rand.New(rand.NewPCG(s.o.Seed, 3))
		sent, failures := 0, 0
		try := func(what, export string, req []byte, n uint32) {
			sent++
			a, err := cl.raw(export, req, n)
			switch {
			case errors.Is(err, errGaveUp):
				sent--
			case err != nil:
				failures++
				c.failf("%s %s (length %d, %d bytes %s): %s", export, what, n, len(req), hexPrefix(req), describe(err))
			case a.RC >= 0 && a.Bytes == nil:
				failures++
				c.failf("%s %s: answer length %d exceeds the %d-byte buffer", export, what, a.RC, cl.sess.BufferSize())
			}
		}
		buf := make([]byte, abi.MaxMessage)
		type entry struct {
			export string
			valid  [][]byte
		}
		var entries []entry
		if s.decides() {
			e := entry{export: abi.ExportDecide}
			for _, r := range dreqs {
				n, _ := r.Encode(buf)
				e.valid = append(e.valid, slices.Clone(buf[:n]))
			}
			// A valid request with every string at its maximum length,
			// for each declared op: it must get a well-formed answer, as
			// it would in production.
			for _, op := range abi.Ops() {
				if !s.meta.Handles(op) {
					continue
				}
				big := abi.DecideRequest{Op: op, Zone: strings.Repeat("z", abi.MaxZone), State: strings.Repeat("s", abi.MaxState),
					Object: "/" + strings.Repeat("d/", (abi.MaxObject-2)/2) + "f", TargetZone: strings.Repeat("t", abi.MaxZone)}
				if op.Object() == abi.ObjectEndpoint {
					big.Object, big.Proto, big.Port = "", abi.ProtoTCP, 443
				}
				sent++
				if _, err := cl.decide(&big); c.stop(err) {
					break
				} else if err != nil {
					failures++
					c.failf("decide %s with every string at its maximum length: %v", op, err)
				}
			}
			entries = append(entries, e)
		}
		if s.classifies() {
			e := entry{export: abi.ExportClassify}
			for _, r := range creqs {
				n, _ := r.Encode(buf)
				e.valid = append(e.valid, slices.Clone(buf[:n]))
			}
			big := abi.ClassifyRequest{Exe: "/" + strings.Repeat("e", abi.MaxExe-1), CreatorZone: strings.Repeat("z", abi.MaxZone),
				CreatorState: strings.Repeat("s", abi.MaxState), CreatorExe: `C:\` + strings.Repeat("x", abi.MaxExe-3)}
			sent++
			if _, err := cl.classify(&big); err != nil && !c.stop(err) {
				failures++
				c.failf("classify with every string at its maximum length: %v", err)
			}
			entries = append(entries, e)
		}
		for _, e := range entries {
			if len(e.valid) == 0 {
				continue
			}
			for _, v := range invalid {
				try("invalid golden vector "+v.Name, e.export, v.Bytes, uint32(len(v.Bytes)))
			}
			// Every truncation of two valid requests.
			for _, v := range e.valid[:min(2, len(e.valid))] {
				for n := 0; n < len(v); n++ {
					try(fmt.Sprintf("truncated to %d bytes", n), e.export, v[:n], uint32(n))
				}
			}
			// Lengths that lie.
			v := e.valid[0]
			bs := cl.sessBufferSize(c)
			for _, n := range []uint32{uint32(len(v)) + 100, abi.MaxMessage, bs, bs + 1, 1 << 31, ^uint32(0)} {
				try(fmt.Sprintf("with a length of %d for %d bytes", n, len(v)), e.export, v, n)
			}
			// A whole buffer of random bytes.
			noise := make([]byte, min(int(bs), abi.MaxMessage))
			fillRandom(rng, noise)
			try("of random bytes", e.export, noise, uint32(len(noise)))
			// Mutations.
			for k := 0; k < s.o.FuzzCases; k++ {
				m := mutate(rng, e.valid[rng.IntN(len(e.valid))])
				try("mutated", e.export, m, uint32(len(m)))
			}
		}
		c.summary = fmt.Sprintf("%d malformed, truncated, maximum-size and lying-length requests, none trapped", sent)
		if failures > 0 {
			c.summary = fmt.Sprintf("%d hostile requests made the plugin fail: %s", failures, c.evidence[0])
		}
	})
}

func (cl *caller) sessBufferSize(c *check) uint32 {
	if cl.sess == nil {
		if sess, err := cl.s.session(); err == nil {
			cl.sess = sess
		} else {
			return abi.MinBufferSize
		}
	}
	return cl.sess.BufferSize()
}

func hexPrefix(b []byte) string {
	if len(b) > 24 {
		return hex.EncodeToString(b[:24]) + "..."
	}
	return hex.EncodeToString(b)
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// mutate returns a damaged copy of a valid request: flipped bits, bytes
// set to extremes, a length or offset field replaced, or a cut.
func mutate(rng *rand.Rand, v []byte) []byte {
	m := slices.Clone(v)
	for k := 1 + rng.IntN(3); k > 0; k-- {
		if len(m) == 0 {
			break
		}
		switch rng.IntN(5) {
		case 0:
			i := rng.IntN(len(m))
			m[i] ^= 1 << rng.IntN(8)
		case 1:
			m[rng.IntN(len(m))] = []byte{0, 0xff, 0x7f, 0x80}[rng.IntN(4)]
		case 2: // a u32 field (length, offset, size) set to something wild
			if len(m) >= 4 {
				i := rng.IntN(len(m)/4) * 4
				x := []uint32{0, 1, 0xffffffff, 0x80000000, uint32(len(m)), uint32(len(m)) + 1, 65536}[rng.IntN(7)]
				m[i], m[i+1], m[i+2], m[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
			}
		case 3:
			m = m[:rng.IntN(len(m))]
		case 4:
			extra := make([]byte, 1+rng.IntN(16))
			fillRandom(rng, extra)
			m = append(m, extra...)
		}
	}
	return m
}

func (s *suite) measure() {
	s.do("measure", true, func(c *check) {
		cl, err := s.newCaller()
		if err != nil {
			c.failf("%v", err)
			return
		}
		defer cl.close()
		corpus := s.corpus()
		for round := 0; round < 20; round++ {
			if s.decides() {
				for _, r := range corpus {
					r.Zone = "guarded"
					cl.decide(&r)
				}
			}
			if s.classifies() {
				for _, e := range exes {
					cl.classify(&abi.ClassifyRequest{Exe: e.path, FS: e.fs, CreatorZone: "system", CreatorExe: "/usr/bin/bash"})
				}
			}
		}
		var parts []string
		for _, export := range []string{abi.ExportDecide, abi.ExportClassify} {
			l := cl.lat[export]
			if len(l) == 0 {
				continue
			}
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			p50, p99 := l[len(l)/2], l[len(l)*99/100]
			parts = append(parts, fmt.Sprintf("%s p50 %v p99 %v (%d calls)", strings.TrimPrefix(export, "lineage_"), p50, p99, len(l)))
			c.notef("%s: p50 %v, p99 %v, max %v over %d calls (wall time per call, host overhead included)", export, p50, p99, l[len(l)-1], len(l))
		}
		if cl.sess != nil {
			mem := cl.sess.MemoryBytes()
			parts = append(parts, fmt.Sprintf("instance memory %d KiB", mem>>10))
			c.notef("instance memory: %d bytes (%d pages)", mem, mem>>16)
		}
		c.summary = strings.Join(parts, "; ")
		if len(cl.lat) == 0 {
			c.summary = "nothing measured: no call succeeded"
		}
	})
}

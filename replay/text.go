package replay

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/host"
)

// WriteText writes r for a person: the verdict, who asked for what and,
// for denials, the rule, the reason and the lineage that set the zone.
func WriteText(w io.Writer, r *Result) error {
	d := &r.Decision
	verdict := d.Verdict.String()
	switch {
	case d.Verdict == abi.Deny && !d.Enforced:
		verdict = "DENY(audit)"
	case d.Verdict == abi.Deny:
		verdict = "DENY"
	}
	if d.Failure {
		verdict += "!"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%4d  %-6s %s  %s %s", r.Event.Line, verdict, procName(d.Subject), opName(r.Event), printable(r.Object))
	if d.Cached {
		b.WriteString("  (cached)")
	}
	b.WriteByte('\n')
	const indent = "              "
	if r.Child != nil {
		fmt.Fprintf(&b, "%s-> %s: %s\n", indent, procName(r.Child), printable(r.Child.Reason))
	}
	if d.Verdict == abi.Deny || d.Failure {
		fmt.Fprintf(&b, "%s%s", indent, printable(d.Rule))
		if d.Plugin != "" {
			fmt.Fprintf(&b, " (%s)", d.Plugin)
		}
		fmt.Fprintf(&b, ": %s\n", printable(d.Reason))
		if chain := d.Subject.Lineage(); len(chain) > 1 {
			fmt.Fprintf(&b, "%slineage: %s\n", indent, ChainString(chain))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func procName(p *host.Process) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprintf("%s(%d)[%s]", printable(p.BaseName()), p.ID.PID, p.Zone)
}

// printable escapes control characters in text that came from a plugin or
// a trace, so that it cannot drive the terminal it is printed on.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// Printable is printable for other text renderers (host explain).
func Printable(s string) string { return printable(s) }

// ChainString renders a lineage chain, child first: a <- b <- c.
func ChainString(chain []*host.Process) string {
	parts := make([]string, len(chain))
	for i, p := range chain {
		parts[i] = fmt.Sprintf("%s(%d)", printable(p.BaseName()), p.ID.PID)
	}
	s := strings.Join(parts, " <- ")
	switch last := chain[len(chain)-1]; {
	case last.AncestryTruncated:
		s += " <- ..."
	case last.AncestryUnknown:
		s += " <- (ancestry unknown)"
	}
	return s
}

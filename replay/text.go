package replay

import (
	"fmt"
	"io"
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
	fmt.Fprintf(&b, "%4d  %-6s %s  %s %s", r.Event.Line, verdict, procName(d.Subject), opName(r.Event), r.Object)
	if d.Cached {
		b.WriteString("  (cached)")
	}
	b.WriteByte('\n')
	const indent = "              "
	if r.Child != nil {
		fmt.Fprintf(&b, "%s-> %s: %s\n", indent, procName(r.Child), r.Child.Reason)
	}
	if d.Verdict == abi.Deny || d.Failure {
		fmt.Fprintf(&b, "%s%s", indent, d.Rule)
		if d.Plugin != "" {
			fmt.Fprintf(&b, " (%s)", d.Plugin)
		}
		fmt.Fprintf(&b, ": %s\n", d.Reason)
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
	return fmt.Sprintf("%s(%d)[%s]", p.BaseName(), p.ID.PID, p.Zone)
}

// ChainString renders a lineage chain, child first: a <- b <- c.
func ChainString(chain []*host.Process) string {
	parts := make([]string, len(chain))
	for i, p := range chain {
		parts[i] = fmt.Sprintf("%s(%d)", p.BaseName(), p.ID.PID)
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

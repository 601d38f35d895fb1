package policy_test

import (
	"fmt"

	"lineage.dev/lineage/abi"
	"lineage.dev/lineage/plugins/zones/policy"
)

// The origin scenario in brief: a PowerShell started down a chain from a
// mail client is guarded, and its write to a Run key is denied.
func Example() {
	c, err := policy.ParseConfig(nil) // no config: the defaults
	if err != nil {
		panic(err)
	}
	p, err := policy.New(c)
	if err != nil {
		panic(err)
	}
	outlook := p.Classify(&abi.ClassifyRequest{
		Exe:         `C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`,
		CreatorZone: policy.ZoneSystem, CreatorExe: `C:\Windows\explorer.exe`,
	})
	pwsh := p.Classify(&abi.ClassifyRequest{
		Exe:         `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`,
		CreatorZone: outlook.Zone, CreatorState: outlook.State, CreatorExe: `C:\x\OUTLOOK.EXE`,
	})
	fmt.Println(pwsh.Zone, pwsh.Rule, pwsh.State)

	d := p.Decide(&abi.DecideRequest{
		Op: abi.OpRegistryWrite, Zone: pwsh.Zone, State: pwsh.State,
		Object: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run\updater`,
	})
	fmt.Println(d.Verdict, d.Rule)
	fmt.Println(d.Reason)
	fmt.Println(d.Scope.Subject, d.Scope.Object, d.Scope.PrefixLen)
	// Output:
	// guarded zone.inherited 1i:OUTLOOK.EXE
	// deny registry.protected
	// guarded processes may not write protected registry keys (HKCU\Software\Microsoft\Windows\CurrentVersion\Run); guarded because ancestor OUTLOOK.EXE is a guarded app
	// zone+state prefix 51
}

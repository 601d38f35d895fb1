package abi_test

import (
	"fmt"

	"lineage.dev/lineage/abi"
)

// The host encodes a request straight into the plugin's I/O buffer, and the
// plugin (here: its SDK) decodes it from there.
func ExampleDecideRequest_Encode() {
	buf := make([]byte, abi.MinBufferSize) // stands for the plugin's exported buffer

	req := abi.DecideRequest{Op: abi.OpFileWrite, Zone: "office", State: "mail", Object: "/srv/critical/db.conf"}
	n, err := req.Encode(buf)
	if err != nil {
		panic(err)
	}
	fmt.Printf("header: % x\n", buf[:16])
	fmt.Printf("strings: %q\n", buf[abi.DecideRequestSize:n])

	var got abi.DecideRequest
	if err := got.Decode(buf[:n]); err != nil {
		panic(err)
	}
	fmt.Println(got.Op, got.Zone, got.State, got.Object)
	// Output:
	// header: 48 00 00 00 67 00 00 00 01 00 00 00 02 00 04 00
	// strings: "officemail/srv/critical/db.conf"
	// file.write office mail /srv/critical/db.conf
}

// A plugin answers in the same buffer; the host decodes the answer, then
// checks that the scope it claims holds the request it answers.
func ExampleDecideResponse_Decode() {
	buf := make([]byte, abi.MinBufferSize)
	req := abi.DecideRequest{Op: abi.OpFileWrite, Zone: "office", Object: "/srv/critical/db.conf"}

	answer := abi.DecideResponse{
		Verdict: abi.Deny,
		Scope:   abi.Scope{Subject: abi.SubjectZone, Object: abi.ObjectPrefix, PrefixLen: uint32(len("/srv/critical/")), TTLMillis: 3600_000},
		Rule:    "example.protected",
	}
	n, err := answer.Encode(buf, req.Op)
	if err != nil {
		panic(err)
	}

	var resp abi.DecideResponse
	if err := resp.Decode(buf[:n], req.Op); err != nil {
		panic(err)
	}
	if err := resp.CheckScope(&req); err != nil {
		panic(err)
	}
	fmt.Printf("%v for zone %s, every object under %q, for %d s\n",
		resp.Verdict, req.Zone, req.Object[:resp.Scope.PrefixLen], resp.Scope.TTLMillis/1000)

	resp.Scope.PrefixLen = 99 // longer than the object: not a scope around this request
	fmt.Println(resp.CheckScope(&req))
	// Output:
	// deny for zone office, every object under "/srv/critical/", for 3600 s
	// abi: decide response: field prefix_len: got 99, want at most the object's length (21)
}

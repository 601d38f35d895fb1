//go:build linux

package proctrack

// The object and its Go bindings are generated from ../bpf/proctrack.c and
// committed, so building needs no clang. Regenerate with
//
//	go generate ./kernel/linux/proctrack
//
// (clang and libbpf-dev from Debian).
//go:generate go tool bpf2go -tags linux -target bpfel -type event -type exec_event proctrack ../bpf/proctrack.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu

#!/usr/bin/env bash
# Builds the broken-plugin corpus from its sources. Run from the repository
# root: conformance/testdata/build.sh [OUTDIR] (default: conformance/testdata).
# Needs wat2wasm (Debian: wabt) and Go. TestCorpusIsFreshBuild checks that
# the committed .wasm files are what this script builds.
set -euo pipefail
src=conformance/testdata
out=${1:-$src}
mkdir -p "$out"
annotate() { go run ./sdk/go/cmd/lineage-annotate -name "$1" -version 1.0.0 -vendor 'Lineage conformance corpus' "$out/$1.wasm"; }

# Plugins written in WAT, annotated with their metadata like any plugin.
for name in good no-exports start-loop decide-loop decide-trap memory-bomb recursion \
	garbage-verdict garbage-length garbage-offset unknown-import huge-memory zero-memory; do
	wat2wasm "$src/$name.wat" -o "$out/$name.wasm"
	annotate "$name"
done

# The good plugin annotated as usual, then its metadata's major version
# (the u16 at offset 4 of the lineage.plugin section's contents, after the
# 14-byte name) patched from 1 to 2.
wat2wasm "$src/good.wat" -o "$out/wrong-major.wasm"
annotate wrong-major
off=$(grep -obUa 'lineage.plugin' "$out/wrong-major.wasm" | head -1 | cut -d: -f1)
printf '\x02' | dd of="$out/wrong-major.wasm" bs=1 seek=$((off + 14 + 4)) conv=notrunc status=none

# Files that are not plugins at all.
printf 'this is a text file, not a WebAssembly module\n' >"$out/not-wasm.wasm"
: >"$out/empty.wasm"
head -c 100 "$out/good.wasm" >"$out/truncated.wasm" # cut short in the middle of a section

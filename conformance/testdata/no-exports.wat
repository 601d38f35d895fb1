;; no-exports: a module with memory and metadata but no exports at all
;;
;; The host needs lineage_buffer, lineage_buffer_size, lineage_init,
;; lineage_decide and the memory; this module exports none of them.
;;
;; Built by conformance/testdata/build.sh (from the repository root):
;;   wat2wasm conformance/testdata/no-exports.wat -o conformance/testdata/no-exports.wasm && go run ./sdk/go/cmd/lineage-annotate -name no-exports -version 1.0.0 -vendor 'Lineage conformance corpus' conformance/testdata/no-exports.wasm
(module
  (memory 1)
  (func $decide (param i32) (result i32) (i32.const 0))
)

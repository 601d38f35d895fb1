;; A plugin whose lineage_decide takes an i64: refused at load.
;; Built with: wat2wasm host/testdata/bad-signature.wat -o host/testdata/bad-signature.wasm
;;   go run ./sdk/go/cmd/lineage-annotate -name bad -version 1 -entry decide -ops all host/testdata/bad-signature.wasm
(module
  (memory (export "memory") 2)
  (func (export "lineage_buffer") (result i32) (i32.const 1024))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))
  (func (export "lineage_init") (param i32) (result i32) (i32.const 0))
  (func (export "lineage_decide") (param i64) (result i32) (i32.const 0)))

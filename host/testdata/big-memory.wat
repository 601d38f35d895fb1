;; A plugin that declares 1 GiB of initial memory: refused at load.
;; Built with: wat2wasm host/testdata/big-memory.wat -o host/testdata/big-memory.wasm
;;   go run ./sdk/go/cmd/lineage-annotate -name bad -version 1 -entry decide -ops all host/testdata/big-memory.wasm
(module
  (memory (export "memory") 16384)
  (func (export "lineage_buffer") (result i32) (i32.const 1024))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))
  (func (export "lineage_init") (param i32) (result i32) (i32.const 0))
  (func (export "lineage_decide") (param i32) (result i32) (i32.const 0)))

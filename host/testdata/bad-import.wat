;; A plugin that imports a host function outside WASI: refused at load.
;; Built with: wat2wasm host/testdata/bad-import.wat -o host/testdata/bad-import.wasm
;;   go run ./sdk/go/cmd/lineage-annotate -name bad -version 1 -entry decide -ops all host/testdata/bad-import.wasm
(module
  (import "env" "open_socket" (func $sock (param i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "lineage_buffer") (result i32) (i32.const 1024))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))
  (func (export "lineage_init") (param i32) (result i32) (i32.const 0))
  (func (export "lineage_decide") (param i32) (result i32) (call $sock (i32.const 0))))

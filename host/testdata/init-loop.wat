;; A plugin whose reactor initializer never returns: refused at load
;; within the init deadline.
;; Built with: wat2wasm host/testdata/init-loop.wat -o host/testdata/init-loop.wasm
;;   go run ./sdk/go/cmd/lineage-annotate -name bad -version 1 -entry decide -ops all host/testdata/init-loop.wasm
(module
  (memory (export "memory") 2)
  (func (export "_initialize") (loop $l (br $l)))
  (func (export "lineage_buffer") (result i32) (i32.const 1024))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))
  (func (export "lineage_init") (param i32) (result i32) (i32.const 0))
  (func (export "lineage_decide") (param i32) (result i32) (i32.const 0)))

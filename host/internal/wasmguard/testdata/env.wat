;; The "env" module that features.wasm imports from.
;;
;; Built with: wat2wasm env.wat -o env.wasm
(module
  (global (export "g") (mut i32) (i32.const 42))
  (global (export "k") i64 (i64.const 7))
  (func (export "twice") (param i32) (result i32)
    (i32.shl (local.get 0) (i32.const 1)))
)

;; A module whose start function never returns. Uninstrumented, it cannot
;; even be instantiated.
;;
;; Built with: wat2wasm start_loop.wat -o start_loop.wasm
(module
  (memory 1)
  (global $ticks (mut i64) (i64.const 0))
  (func $init
    (loop $forever
      (global.set $ticks (i64.add (global.get $ticks) (i64.const 1)))
      (br $forever)))
  (start $init)
  (func (export "ticks") (result i64) (global.get $ticks))
)

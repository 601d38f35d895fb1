;; Guest code that never returns on its own, for the interrupt tests.
;;
;; Built with: wat2wasm interrupt.wat -o interrupt.wasm
(module
  ;; The instrumentation needs a memory for its exits to Go.
  (memory 1)

  ;; An infinite loop: only the check at the loop header can stop it.
  (func (export "spin")
    (loop $forever
      (br $forever)))

  ;; Unbounded recursion without loops: stopped by the depth limit.
  (func $recurse (export "recurse") (param $n i32) (result i32)
    (i32.add
      (call $recurse (i32.add (local.get $n) (i32.const 1)))
      (i32.const 1)))

  ;; A call tree 2^n calls wide but only n deep, again without loops:
  ;; exptree(60) never runs out of stack, so only the function entry check
  ;; can stop it.
  (func $exptree (export "exptree") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else
        (i32.add
          (call $exptree (i32.sub (local.get $n) (i32.const 1)))
          (call $exptree (i32.sub (local.get $n) (i32.const 1)))))))

  ;; Loops n times doing nothing else, for measuring what the checks and
  ;; the exits to Go cost.
  (func (export "count") (param $n i32)
    (loop $l
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
)

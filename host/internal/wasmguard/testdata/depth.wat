;; Functions that leave in every way a function can, for the depth
;; bookkeeping tests: through their final end, return, br, br_if and
;; br_table to the function's label, and tail calls; with 0, 1, 2 and 3
;; results. env.probe reports the depth counter to the host, so the tests
;; can check it inside calls as well as after them; env.reenter calls back
;; into the guest's "leaf" from the host.
;;
;; Built with: wat2wasm --enable-tail-call depth.wat -o depth.wasm
(module
  (import "env" "probe" (func $probe))
  (import "env" "reenter" (func $reenter))

  ;; An existing [] -> [i32 i32] type that wrapper blocks can reuse; the
  ;; other multi-value result types get new ones appended.
  (type $ii (func (result i32 i32)))
  (type $count (func (param i32) (result i32)))

  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $countdown $leaf_i32)
  (global $calls (export "calls") (mut i32) (i32.const 0))

  ;; 0 results, leaves through its end.
  (func $leaf (export "leaf")
    (call $probe)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1))))

  (func $leaf_i32 (type $count)
    (i32.add (local.get 0) (i32.const 15))) ;; 15 = 0x0f, the return opcode

  ;; return from several nesting depths; 0x0f bytes in immediates.
  (func $ret (export "ret") (param $x i32) (result i32)
    (call $probe)
    (if (i32.eqz (local.get $x)) (then (return (i32.const 0x0f0f))))
    (block $a
      (block $b
        (loop $l
          (br_if $a (i32.eq (local.get $x) (i32.const 1)))
          (if (i32.eq (local.get $x) (i32.const 2))
            (then (return (i32.const 2))))
          (br_if $b (i32.eq (local.get $x) (i32.const 3)))
          (if (i32.eq (local.get $x) (i32.const 4))
            (then (block (block (return (i32.const 4))))))))
      (return (i32.const 3)))
    (i32.const 1))

  ;; 0 results, return at depth 0 and inside a loop.
  (func $ret_void (export "ret_void") (param $x i32)
    (call $probe)
    (if (local.get $x) (then return))
    (loop $l
      (if (i32.eqz (local.get $x)) (then return)))
    return)

  ;; br to the function's label from several depths.
  (func $br_fn (export "br_fn") (param $x i32) (result i32)
    (call $probe)
    (block $a
      (if (i32.eqz (local.get $x)) (then (br 2 (i32.const 100))))
      (block $b
        (br_if $a (i32.eq (local.get $x) (i32.const 1)))
        (loop $l
          (br 3 (i32.const 102)))))
    (br 0 (i32.const 101)))

  ;; br_if to the function's label, taken (x != 0) and not taken.
  (func $br_if_fn (export "br_if_fn") (param $x i32) (result i32)
    (call $probe)
    (drop (br_if 0 (i32.const 10) (local.get $x)))
    (block (result i32)
      (drop (br_if 1 (i32.const 11) (i32.eq (local.get $x) (i32.const 0))))
      (i32.const 12)))

  ;; br_table to the function's label (index 1 and the default) or not.
  (func $br_table_fn (export "br_table_fn") (param $x i32) (result i32)
    (call $probe)
    (block $inner (result i32)
      (br_table $inner 1 $inner 1 (i32.const 20) (local.get $x)))
    (i32.const 1)
    (i32.add))

  ;; Two results, through a type index: end, return and br to the label.
  (func $pair (export "pair") (param $x i32) (result i32 i64)
    (call $probe)
    (if (i32.eq (local.get $x) (i32.const 1))
      (then (return (i32.const 1) (i64.const -1))))
    (block
      (br_if 0 (i32.ne (local.get $x) (i32.const 2)))
      (br 1 (i32.const 2) (i64.const -2)))
    (i32.const 0)
    (i64.extend_i32_u (local.get $x)))

  ;; Two results of the existing type $ii, and three results.
  (func $ii (export "ii") (type $ii)
    (call $probe)
    (return (i32.const 5) (i32.const 6)))
  (func $three (export "three") (param $x i32) (result f32 f64 i32)
    (call $probe)
    (if (local.get $x) (then (br 1 (f32.const 1) (f64.const 2) (i32.const 3))))
    (f32.const 4) (f64.const 5) (i32.const 6))

  ;; Direct and indirect tail calls, 100000 deep in all: more than the
  ;; depth limit unless every tail call gives its frame back.
  (func $countdown (type $count)
    (if (result i32) (i32.eqz (local.get 0))
      (then (call $probe) (i32.const 7))
      (else
        (if (result i32) (i32.and (local.get 0) (i32.const 1))
          (then (return_call $countdown (i32.sub (local.get 0) (i32.const 1))))
          (else (return_call_indirect (type $count)
            (i32.sub (local.get 0) (i32.const 1)) (i32.const 0)))))))
  (func (export "tail") (param $n i32) (result i32)
    (return_call $countdown (local.get $n)))
  (func (export "tail_leaf") (param $x i32) (result i32)
    (return_call_indirect (type $count) (local.get $x) (i32.const 1)))

  ;; Plain recursion n deep, with a probe at the bottom (depth n+1) and a
  ;; return on the way up.
  (func $deep (export "deep") (param $n i32) (result i32)
    (if (i32.eqz (local.get $n))
      (then
        (call $probe)
        (return (i32.const 0))))
    (i32.add (call $deep (i32.sub (local.get $n) (i32.const 1))) (i32.const 1))
    (return))

  ;; Calls every function above at depth 2 (and reenters through the host
  ;; at depth 3): each must give back exactly what it took.
  (func $all (export "all") (param $x i32) (result i32)
    (local $acc i32)
    (call $probe)
    (call $leaf)
    (call $probe)
    (call $reenter)
    (call $probe)
    (local.set $acc (call $ret (local.get $x)))
    (call $ret_void (local.get $x))
    (local.set $acc (i32.add (local.get $acc) (call $br_fn (local.get $x))))
    (local.set $acc (i32.add (local.get $acc) (call $br_if_fn (local.get $x))))
    (local.set $acc (i32.add (local.get $acc) (call $br_table_fn (local.get $x))))
    (call $pair (local.get $x))
    (drop)
    (local.set $acc (i32.add (local.get $acc)))
    (call $ii)
    (local.set $acc (i32.add (local.get $acc) (i32.mul)))
    (call $three (local.get $x))
    (local.set $acc (i32.add (local.get $acc)))
    (drop) (drop)
    (local.set $acc (i32.add (local.get $acc) (call $countdown (i32.const 999))))
    (local.set $acc (i32.add (local.get $acc) (call $deep (i32.const 50))))
    (call $probe)
    (local.get $acc))
)

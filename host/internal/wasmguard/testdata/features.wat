;; A module that exercises the instruction encodings Instrument must walk
;; correctly: nested loops, br_table, block types given by type index,
;; SIMD, bulk memory, reference types, sign extension, saturating
;; truncation, tail calls, a start function, and imported functions and
;; globals (which shift the function and global index spaces). Many
;; immediates are chosen to contain the byte 0x03, the loop opcode.
;;
;; Built with: wat2wasm --enable-tail-call features.wat -o features.wasm
(module
  (import "env" "twice" (func $twice (param i32) (result i32)))
  (import "env" "g" (global $g (mut i32)))
  (import "env" "k" (global $k i64))

  (type $void (func))
  (type $bin (func (param i32 i32) (result i32)))
  (type $unused (func (param f32)))
  ;; Index 3, so "block (type $pair)" encodes as 0x02 0x03.
  (type $pair (func (param i32 i32) (result i32 i32)))
  (type $count (func (param i32) (result i32)))

  (memory (export "mem") 1)
  (table $funcs 6 funcref)
  (table $refs 2 externref)

  (global $seed (mut i32) (i32.const 3))
  (global $started (export "started") (mut i32) (i32.const 0))

  ;; Passive, so only the start function's memory.init copies it.
  (data $greeting "\03\03\03\03hello, wasm\03")
  (elem (table $funcs) (i32.const 0) func $add $sub $mul $twice $even)
  (elem declare func $nested)

  (start $init)

  ;; Leaves traces in a global and in memory that the exported functions
  ;; read back, so that skipping or repeating it would show.
  (func $init
    (local $i i32)
    (global.set $started
      (i32.add (global.get $g) (i32.wrap_i64 (global.get $k))))
    (memory.init $greeting (i32.const 64) (i32.const 0) (i32.const 16))
    (loop $fill
      (i32.store8 offset=128 (local.get $i) (i32.mul (local.get $i) (i32.const 3)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 64))))
    (data.drop $greeting))

  (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $bin) (i32.mul (local.get 0) (local.get 1)))

  ;; Nested loops: the sum of i*j over j < i < n.
  (func $nested (export "nested") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    (block $done
      (loop $outer
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $inner_done
          (loop $inner
            (br_if $inner_done (i32.ge_u (local.get $j) (local.get $i)))
            (local.set $acc
              (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.get $acc))

  ;; A state machine dispatched by br_table inside a loop, the shape of Go's
  ;; compiled functions: Collatz steps down to 1.
  (func (export "machine") (param $x i32) (result i32)
    (local $steps i32)
    (block $exit
      (loop $top
        (br_if $exit (i32.le_u (local.get $x) (i32.const 1)))
        (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
        (block $odd
          (block $even
            (br_table $even $odd $odd $even $exit
              (i32.and (local.get $x) (i32.const 3))))
          (local.set $x (i32.shr_u (local.get $x) (i32.const 1)))
          (br $top))
        (local.set $x
          (i32.add (i32.mul (local.get $x) (i32.const 3)) (i32.const 1)))
        (br $top)))
    (local.get $steps))

  ;; Blocks and loops typed by a type index, with parameters.
  (func (export "typed") (param $a i32) (param $b i32) (result i32)
    (local $t i32)
    local.get $a
    local.get $b
    block (type $pair) (param i32 i32) (result i32 i32)
      local.set $t
      local.get $t
      i32.const 3
      i32.mul
    end
    i32.sub
    loop $down (type $count) (param i32) (result i32)
      i32.const 7
      i32.sub
      local.tee $t
      local.get $t
      i32.const 0
      i32.gt_s
      br_if $down
    end
    loop (result i32)
      i32.const 3
    end
    i32.add)

  (func (export "simd") (param $x i32) (result i32)
    (local $v v128)
    (local.set $v
      (i32x4.add
        (i32x4.splat (local.get $x))
        (v128.const i8x16 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3)))
    (local.set $v
      (i8x16.shuffle 3 2 1 0 7 6 5 4 11 10 9 8 15 14 13 12
        (local.get $v) (local.get $v)))
    (v128.store offset=256 (i32.const 0) (local.get $v))
    (local.set $v
      (v128.load32_lane offset=3 3 (i32.const 256) (local.get $v)))
    (local.set $v
      (i32x4.add (local.get $v) (v128.load32_zero offset=260 (i32.const 0))))
    (v128.store8_lane offset=300 3 (i32.const 0) (local.get $v))
    (local.set $v (i16x8.replace_lane 3 (local.get $v) (i32.const 0x0303)))
    (i32.add
      (i32x4.extract_lane 3 (local.get $v))
      (i32.add
        (i8x16.extract_lane_u 3 (local.get $v))
        (i32.add
          (i32.load8_u offset=300 (i32.const 0))
          (i32x4.bitmask (i32x4.gt_s (local.get $v) (v128.const i32x4 3 3 3 3)))))))

  ;; Bulk memory, and a loop that sums what it produced together with what
  ;; the start function left in memory.
  (func (export "bulk") (param $n i32) (result i32)
    (local $i i32) (local $sum i32)
    (memory.fill (i32.const 1024) (local.get $n) (i32.const 256))
    (memory.copy (i32.const 2048) (i32.const 64) (i32.const 256))
    (loop $add
      (local.set $sum
        (i32.add (local.get $sum) (i32.load8_u offset=1024 (local.get $i))))
      (local.set $sum
        (i32.add (local.get $sum) (i32.load8_u offset=2048 (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $add (i32.lt_u (local.get $i) (i32.const 256))))
    (i32.add (local.get $sum)
      (i32.add (memory.size) (memory.grow (i32.const 0)))))

  ;; Reference types and tables.
  (func (export "refs") (param $x i32) (param $y i32) (result i32)
    (local $r funcref)
    (if (i32.and (local.get $x) (i32.const 1))
      (then (table.set $funcs (i32.const 5) (ref.func $nested)))
      (else (table.set $funcs (i32.const 5) (table.get $funcs (i32.const 3)))))
    (local.set $r
      (select (result funcref)
        (table.get $funcs (i32.const 5))
        (ref.null func)
        (i32.lt_u (local.get $x) (i32.const 100))))
    (drop (table.grow $refs (ref.null extern) (i32.const 1)))
    (table.fill $refs (i32.const 0) (ref.null extern) (i32.const 3))
    (i32.add
      (i32.add
        (call_indirect $funcs (type $bin)
          (local.get $x) (local.get $y) (i32.rem_u (local.get $x) (i32.const 3)))
        (call_indirect $funcs (type $count) (local.get $y) (i32.const 5)))
      (i32.add
        (table.size $refs)
        (select (i32.const 10) (local.get $x) (ref.is_null (local.get $r))))))

  ;; Sign extension, saturating truncation, and constants whose encodings
  ;; are full of 0x03 bytes.
  (func (export "numeric") (param $f f64) (result i64)
    (i64.add
      (i64.add
        (i64.trunc_sat_f64_s
          (f64.mul (local.get $f) (f64.const 0x1.0303030303p+3)))
        (i64.extend8_s (i64.const 0x0303030303030383)))
      (i64.add
        (i64.extend_i32_s
          (i32.extend16_s
            (i32.trunc_sat_f32_u (f32.const 0x1.030303p+20))))
        (i64.add (i64.const -3) (i64.const 0x7fffffffffffff03)))))

  ;; Tail calls, direct and through the table (slot 4 is $even).
  (func $even (export "is_even") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call $odd (i32.sub (local.get $n) (i32.const 1))))))
  (func $odd (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else
        (return_call_indirect $funcs (type $count)
          (i32.sub (local.get $n) (i32.const 1)) (i32.const 4)))))

  ;; Reads and writes globals on both sides of the new one's index, and
  ;; calls the imported function.
  (func (export "globals") (param $x i32) (result i32)
    (global.set $seed (i32.add (global.get $seed) (local.get $x)))
    (global.set $g (call $twice (global.get $g)))
    (i32.add
      (i32.add (global.get $seed) (global.get $started))
      (i32.add (global.get $g) (i32.wrap_i64 (global.get $k)))))
)

;; behave is a test plugin written directly against the ABI (no SDK). Its
;; behaviour is chosen by the first byte of its config:
;;   a allow   d deny   s abstain   (decide answers with scope any/all subjects, TTL 60s)
;;   l infinite loop   t trap   g memory-grow bomb   r unbounded recursion
;;   v out-of-range verdict   o answer length beyond the buffer
;;   p prefix scope longer than the object   e error code 4 with a message
;;   x reject the config in lineage_init
;; classify abstains, except that l, t, g and r misbehave there too.
;;
;; Built with (from the repository root):
;;   wat2wasm host/testdata/behave.wat -o host/testdata/behave.wasm
;;   go run ./sdk/go/cmd/lineage-annotate -name behave -version 1.0.0 -entry classify,decide -ops all host/testdata/behave.wasm
(module
  (memory (export "memory") 2)
  (global $mode (mut i32) (i32.const 97))
  (global $buf i32 (i32.const 1024))

  (func (export "lineage_buffer") (result i32) (global.get $buf))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))

  (func (export "lineage_init") (param $n i32) (result i32)
    (if (i32.gt_u (local.get $n) (i32.const 0))
      (then (global.set $mode (i32.load8_u (global.get $buf)))))
    (if (i32.eq (global.get $mode) (i32.const 120)) ;; 'x'
      (then
        (i32.store (i32.const 1024) (i32.const 10))
        (i64.store (i32.const 1028) (i64.const 0x666e6f6320646162)) ;; "bad conf"
        (i32.store16 (i32.const 1036) (i32.const 0x6769))            ;; "ig"
        (return (i32.const -3))))
    (i32.const 0))

  (func $misbehave
    (local $m i32)
    (local.set $m (global.get $mode))
    (if (i32.eq (local.get $m) (i32.const 108)) (then (loop $forever (br $forever))))            ;; l
    (if (i32.eq (local.get $m) (i32.const 116)) (then unreachable))                              ;; t
    (if (i32.eq (local.get $m) (i32.const 103))                                                  ;; g
      (then
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (if (i32.eq (local.get $m) (i32.const 114)) (then (call $recurse (i32.const 0)) drop)))     ;; r

  (func $recurse (param $d i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $d) (i32.const 1))) (i32.const 1)))

  ;; header writes the common response header; the request's op stays in
  ;; bytes 14..15, which is where the response echoes it.
  (func $header (param $size i32) (param $kind i32)
    (i32.store (i32.const 1024) (local.get $size))
    (i32.store (i32.const 1028) (local.get $size))
    (i32.store16 (i32.const 1032) (i32.const 1))
    (i32.store16 (i32.const 1034) (i32.const 0))
    (i32.store16 (i32.const 1036) (local.get $kind)))

  (func $answer (param $verdict i32) (param $sobj i32) (param $plen i32) (result i32)
    (call $header (i32.const 48) (i32.const 2))
    (i32.store8 (i32.const 1040) (local.get $verdict))
    (i32.store8 (i32.const 1041) (i32.const 2))
    (i32.store8 (i32.const 1042) (local.get $sobj))
    (i32.store8 (i32.const 1043) (i32.const 0))
    (i32.store (i32.const 1044) (local.get $plen))
    (i32.store (i32.const 1048) (i32.const 0))
    (i32.store (i32.const 1052) (i32.const 60000))
    (i64.store (i32.const 1056) (i64.const 0))
    (i64.store (i32.const 1064) (i64.const 0))
    (i32.const 48))

  (func (export "lineage_decide") (param $n i32) (result i32)
    (local $m i32)
    (call $misbehave)
    (local.set $m (global.get $mode))
    (if (i32.eq (local.get $m) (i32.const 97)) (then (return (call $answer (i32.const 1) (i32.const 3) (i32.const 0)))))   ;; a
    (if (i32.eq (local.get $m) (i32.const 100)) (then (return (call $answer (i32.const 2) (i32.const 3) (i32.const 0)))))  ;; d
    (if (i32.eq (local.get $m) (i32.const 118)) (then (return (call $answer (i32.const 7) (i32.const 3) (i32.const 0)))))  ;; v
    (if (i32.eq (local.get $m) (i32.const 112)) (then (return (call $answer (i32.const 1) (i32.const 1) (i32.const 65535))))) ;; p
    (if (i32.eq (local.get $m) (i32.const 111)) (then (return (i32.const 0x7fffffff))))                                     ;; o
    (if (i32.eq (local.get $m) (i32.const 101))                                                                              ;; e
      (then
        (i32.store (i32.const 1024) (i32.const 4))
        (i32.store (i32.const 1028) (i32.const 0x6d6f6f62)) ;; "boom"
        (return (i32.const -4))))
    (call $answer (i32.const 0) (i32.const 3) (i32.const 0)))

  (func (export "lineage_classify") (param $n i32) (result i32)
    (call $misbehave)
    (call $header (i32.const 56) (i32.const 1))
    (i64.store (i32.const 1040) (i64.const 0))
    (i64.store (i32.const 1048) (i64.const 0))
    (i64.store (i32.const 1056) (i64.const 0))
    (i64.store (i32.const 1064) (i64.const 0))
    (i64.store (i32.const 1072) (i64.const 0))
    (i32.const 56))
)

;; zero-memory: a memory of zero pages that can never grow
;;
;; Otherwise the good plugin, but its memory is 0 pages with a maximum of 0,
;; so the buffer it names lies outside it. (A runtime may also fail to set up
;; such a memory at all; the host must refuse it either way, not crash.)
;;
;; Built by conformance/testdata/build.sh (from the repository root):
;;   wat2wasm conformance/testdata/zero-memory.wat -o conformance/testdata/zero-memory.wasm && go run ./sdk/go/cmd/lineage-annotate -name zero-memory -version 1.0.0 -vendor 'Lineage conformance corpus' conformance/testdata/zero-memory.wasm
(module
  (memory (export "memory") 0 0)

  (func (export "lineage_buffer") (result i32) (i32.const 1024))
  (func (export "lineage_buffer_size") (result i32) (i32.const 65536))
  (func (export "lineage_init") (param $n i32) (result i32) (i32.const 0))

  ;; header writes the common response header at the buffer's start; the
  ;; request's op stays in bytes 14..15, where the answer echoes it.
  (func $header (param $size i32) (param $kind i32)
    (i32.store (i32.const 1024) (local.get $size))
    (i32.store (i32.const 1028) (local.get $size))
    (i32.store16 (i32.const 1032) (i32.const 1))
    (i32.store16 (i32.const 1034) (i32.const 0))
    (i32.store16 (i32.const 1036) (local.get $kind)))

  ;; classify abstains: not classified, no state, no rule, no reason.
  (func (export "lineage_classify") (param $n i32) (result i32)
    (call $header (i32.const 56) (i32.const 1))
    (i32.store16 (i32.const 1038) (i32.const 1))
    (i64.store (i32.const 1040) (i64.const 0))
    (i64.store (i32.const 1048) (i64.const 0))
    (i64.store (i32.const 1056) (i64.const 0))
    (i64.store (i32.const 1064) (i64.const 0))
    (i64.store (i32.const 1072) (i64.const 0))
    (i32.const 56))

  ;; decide: allow, for every subject and every object of the op, for a minute.
  (func (export "lineage_decide") (param $n i32) (result i32)
    (call $header (i32.const 48) (i32.const 2))
    (i32.store8 (i32.const 1040) (i32.const 1))  ;; verdict
    (i32.store8 (i32.const 1041) (i32.const 2))  ;; scope: every subject
    (i32.store8 (i32.const 1042) (i32.const 3))  ;; every object of the op
    (i32.store8 (i32.const 1043) (i32.const 0))
    (i32.store (i32.const 1044) (i32.const 0))   ;; prefix_len
    (i32.store (i32.const 1048) (i32.const 0))   ;; ports
    (i32.store (i32.const 1052) (i32.const 60000)) ;; ttl_ms
    (i64.store (i32.const 1056) (i64.const 0)) ;; rule (offset, length)
    (i64.store (i32.const 1064) (i64.const 0))   ;; reason
    (i32.const 48))
)

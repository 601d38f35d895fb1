// A separate module, so that the tests can build it for wasip1 without
// touching the main module's build.
module lineage.dev/wasmguard/goplugin

go 1.24

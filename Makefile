# Lineage build. `make demo` and `make test` are the two commands a new
# machine needs; everything else is for development.
GO          ?= go
BUILD       ?= build
PLUGIN_OUT  ?= $(BUILD)/plugins
# Reproducible wasm: no paths, no build id, so a fresh build is byte-equal
# to the copy embedded in the host (a test checks it).
WASM_FLAGS  := -buildmode=c-shared -trimpath -ldflags=-buildid=
ANNOTATE    := $(GO) run ./sdk/go/cmd/lineage-annotate
SCENARIO    ?= testdata/scenarios/origin.jsonl
ROUNDS      ?= 5
PIN         ?=

.PHONY: all host plugins embed demo test bench fuzz conformance corpus generate e2e bench-kernel clean

all: host plugins

host:
	$(GO) build -o $(BUILD)/host ./cmd/host

# Every reference plugin, built and annotated with its metadata.
plugins:
	@mkdir -p $(PLUGIN_OUT)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASM_FLAGS) -o $(PLUGIN_OUT)/zones.wasm ./plugins/zones
	$(ANNOTATE) -name zones -version 1.0.0 -vendor Lineage -entry classify,decide -ops all $(PLUGIN_OUT)/zones.wasm
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASM_FLAGS) -o $(PLUGIN_OUT)/example.wasm ./sdk/go/example
	$(ANNOTATE) -name example -version 1.0.0 -vendor "Lineage examples" -entry decide -ops file.write,file.delete $(PLUGIN_OUT)/example.wasm

# Refresh the zones plugin embedded in the host binary.
embed: plugins
	cp $(PLUGIN_OUT)/zones.wasm plugins/builtin/zones.wasm

# Replay the origin scenario with the built-in plugin, for people.
demo: host
	@echo "Origin scenario: $(SCENARIO)"
	@echo "explorer.exe -> OUTLOOK.EXE -> firefox.exe -> AcroRd32.exe -> powershell.exe, then explorer.exe -> powershell.exe"
	@echo
	@$(BUILD)/host replay --format text $(SCENARIO)

# Run the conformance suite against the reference plugins.
conformance: host plugins
	$(BUILD)/host conformance --config plugins/zones/config.example.json $(PLUGIN_OUT)/zones.wasm
	$(BUILD)/host conformance --config sdk/go/example/config.example.json $(PLUGIN_OUT)/example.wasm

# The privileged end-to-end tests (root): real processes, fanotify and eBPF
# on a tmpfs made for each test; skips become failures.
e2e:
	LINEAGE_REQUIRE_PRIVILEGED=1 $(GO) test -count=1 -v -run 'E2E|OriginScenario|AuditLog' ./agent/
	LINEAGE_REQUIRE_PRIVILEGED=1 $(GO) test -count=1 ./kernel/...

# The kernel-side benchmark (root): exec and open storms on a tmpfs with no
# listener, a minimal fanotify listener (the floor), fapolicyd in
# permissive mode (when installed) and Lineage; prints times and ratios.
bench-kernel:
	@mkdir -p $(PLUGIN_OUT)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASM_FLAGS) -o $(PLUGIN_OUT)/openall.wasm ./agent/testdata/openall
	$(ANNOTATE) -name openall -version 1 -vendor "Lineage tests" -entry classify,decide -ops all $(PLUGIN_OUT)/openall.wasm
	$(GO) build -o $(BUILD)/bench-kernel ./bench/kernel
	$(BUILD)/bench-kernel -rounds $(ROUNDS) $(if $(PIN),-pin $(PIN)) -openall $(PLUGIN_OUT)/openall.wasm

# Rebuild the broken-plugin corpus (needs wat2wasm, Debian package wabt).
corpus:
	conformance/testdata/build.sh

# Regenerate the eBPF objects and their Go bindings (needs clang and
# libbpf-dev); the results are committed.
generate:
	$(GO) generate ./kernel/...

test:
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./plugins/...
	GOOS=windows $(GO) build ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race -short ./abi/... ./host/... ./replay/... ./config/... ./conformance/... ./kernel/... ./agent/...

bench:
	@mkdir -p $(BUILD)
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./host/ | tee $(BUILD)/bench.txt

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecideRequest -fuzztime 30s ./abi/
	$(GO) test -run '^$$' -fuzz FuzzDecideResponse -fuzztime 30s ./abi/

clean:
	rm -rf $(BUILD)

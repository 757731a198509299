# Flashvisor. `make help` lists the targets. Everything runs as root on
# Debian 12; `make deps` installs what the rest needs.

SHELL      := /bin/bash
GO         ?= go
OUT        ?= out
CACHE      ?= $(OUT)/cache
HOST_IMAGE := $(OUT)/host
E2E_TIMEOUT ?= 60m
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export FV_IMAGE_DIR := $(abspath $(HOST_IMAGE))
export FV_IMAGE_CACHE := $(abspath $(CACHE))
export FV_GUEST_IMAGE_DIR := $(abspath $(OUT)/guest)
export FV_VSM_IMAGE_DIR := $(abspath $(OUT)/vsm)

# Debian packages the build, the tests and `make run` need on this machine.
# The image's own Debian parts are pinned in image/debian.lock and fetched
# by the image builder itself.
APT_PACKAGES := qemu-system-x86 qemu-utils ovmf seabios ipxe-qemu zstd cpio \
	e2fsprogs dpkg ca-certificates git iproute2

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-8s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install build and test dependencies (apt + Go modules); run as root
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)
	$(GO) mod download

.PHONY: build
build: ## build the Go programs into out/bin
	CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/bin/ ./cmd/fvctl ./hostd/cmd/hostd ./init/cmd/init ./image/cmd/mkimage ./qemu-test/cmd/fvrun ./testguest/cmd/fvguest ./vsm/cmd/vsm

.PHONY: test
test: ## unit and root integration tests (go vet, go test ./...)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(GO) vet -tags fvhost ./vem/... ./qemu-test/kerneltest/
	$(GO) test ./...

.PHONY: image
image: ## build the host image (out/host), the VSM image (out/vsm) and the test guest (out/guest): kernel, initramfs, manifest
	$(GO) run ./image/cmd/mkimage build -profile host -out $(HOST_IMAGE) -cache $(CACHE) -version $(VERSION)
	$(GO) run ./image/cmd/mkimage build -profile vsm -out $(OUT)/vsm -cache $(CACHE) -version $(VERSION)
	$(GO) run ./image/cmd/mkimage build -profile guest -out $(OUT)/guest -cache $(CACHE) -version $(VERSION)

.PHONY: lock
lock: ## re-pin the images' Debian packages (image/debian.lock, guest.lock, bench.lock, vsm.lock) to the archive's current versions
	$(GO) run ./image/cmd/mkimage lock -profile host -cache $(CACHE)
	$(GO) run ./image/cmd/mkimage lock -profile guest -cache $(CACHE)
	$(GO) run ./image/cmd/mkimage lock -profile bench -cache $(CACHE)
	$(GO) run ./image/cmd/mkimage lock -profile vsm -cache $(CACHE)

.PHONY: run
run: image ## build the image and boot one host in QEMU (console in the foreground)
	$(GO) build -trimpath -o $(OUT)/bin/fvctl ./cmd/fvctl
	$(GO) run ./qemu-test/cmd/fvrun

.PHONY: e2e
e2e: image ## end-to-end tests: boot real images under QEMU (full log in out/e2e.log)
	@mkdir -p $(OUT)
	GO=$(GO) qemu-test/run-e2e $(OUT)/e2e.log $(E2E_TIMEOUT) ./qemu-test/... ./image/...

.PHONY: bench
bench: ## benchmarks; results go to docs/benchmarks.md
	$(GO) run ./qemu-test/cmd/fvbench -out docs/benchmarks.md

.PHONY: check
check: test e2e ## everything CI runs: unit, root integration and e2e tests

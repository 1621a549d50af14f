# flatnet — every target needs root (network namespaces); scripts/with-root re-runs through sudo.
SHELL := /bin/bash
VENV  := .venv
WR    := scripts/with-root
LINT_PATHS   := src tooling/src tests

.PHONY: help setup forwarder demo test test-fast test-kernel lint bench chaos image clean
help:
	@echo "make demo   set up everything, then run the multi-node lab demo (flat vs overlay)"
	@echo "make test   set up everything, then make lint, then run the whole test suite (the kernel tier too)"
	@echo "make test-kernel  only the kernel tier: tests needing 8021q/ipvlan/vlan_filtering, in a VM (docs/KERNEL_TIER.md)"
	@echo "make lint   ruff, mypy (strict: cni, ipam, agent, obs, datapath), import-linter layer contracts"
	@echo "make bench  the full benchmark (writes docs/BENCHMARKS.md and docs/benchmarks/*.png)"
	@echo "make chaos  load + faults (agent SIGKILLs, etcd restarts, etcd member loss, lost node): duplicates and leaks table"
	@echo "make image  build flatnet's OCI image from Debian packages + PyPI, load it into podman/containerd"
	@echo "make setup  only install (apt packages, .venv, /opt/cni/bin/flatnet)"
	@echo "make forwarder  build the CNI forwarder (native/forwarder/build/flatnet), install nothing"
	@echo "make clean  remove every lab namespace/process left behind, and .venv"

setup:
	@$(WR) scripts/setup.sh

forwarder:
	@$(MAKE) -s -C native/forwarder

demo:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/flatnet lab demo'

# the kernel tier runs on its own (one VM boot for all of its tests): test-kernel below
test:
	@$(WR) bash -c 'scripts/setup.sh && $(MAKE) -s lint && $(VENV)/bin/pytest tests -m "not kernel"'
	@$(MAKE) --no-print-directory test-kernel

# tests marked `kernel` run inside a VM booting Debian's stock kernel (qemu/TCG); results come
# back as ordinary pytest results (tests/helpers/kernel_tier.py)
test-kernel:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/pytest tests -m kernel -p no:cacheprovider'

# no root needed; run it before landing (docs/ARCHITECTURE.md says what each tool keeps)
lint:
	@echo "==> ruff check" && $(VENV)/bin/ruff check --quiet $(LINT_PATHS)
	@echo "==> ruff format --check" && $(VENV)/bin/ruff format --check --quiet $(LINT_PATHS)
	@echo "==> mypy --strict (cni, ipam, agent, obs, datapath)" && $(VENV)/bin/mypy
	@echo "==> import-linter" && out=$$($(VENV)/bin/lint-imports --no-cache 2>&1) \
	 && echo "$$out" | grep -E '^Contracts:' || { echo "$$out"; exit 1; }

bench:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/flatnet bench'

chaos:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/python -m flatnet_lab.chaos --store both'

image:
	@$(WR) bash -c 'scripts/setup.sh && scripts/image/build.sh'

test-fast:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/pytest tests/unit'

clean:
	@$(WR) bash -c '[ -x $(VENV)/bin/flatnet ] && $(VENV)/bin/flatnet lab down || true; rm -rf $(VENV) native/forwarder/build'

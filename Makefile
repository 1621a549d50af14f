# flatnet — every target needs root (network namespaces); scripts/with-root re-runs through sudo.
SHELL := /bin/bash
VENV  := .venv
WR    := scripts/with-root

.PHONY: help setup forwarder demo test test-fast bench chaos image clean
help:
	@echo "make demo   set up everything, then run the multi-node lab demo (flat vs overlay)"
	@echo "make test   set up everything, then run the whole test suite"
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

test:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/pytest tests'

bench:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/flatnet bench'

chaos:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/python -m flatnet.chaos --store both'

image:
	@$(WR) bash -c 'scripts/setup.sh && scripts/image/build.sh'

test-fast:
	@$(WR) bash -c 'scripts/setup.sh && $(VENV)/bin/pytest tests/unit'

clean:
	@$(WR) bash -c '[ -x $(VENV)/bin/flatnet ] && $(VENV)/bin/flatnet lab down || true; rm -rf $(VENV) native/forwarder/build'

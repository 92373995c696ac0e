# automaton — build, run and test.
#   make run    builds and runs the daemon locally against ./rules (dry-run unless DRY_RUN=false)
#   make test   fmt check, clippy, every test, the release binary check
SHELL := /bin/bash
CARGO ?= cargo
RULES_DIR ?= ./rules
LISTEN_ADDR ?= 127.0.0.1:8000
DRY_RUN ?= true
LOG_FORMAT ?= text

.PHONY: run test deps fmt format lint unit bench build binary-check check-rules

run: deps
	RULES_DIR=$(RULES_DIR) LISTEN_ADDR=$(LISTEN_ADDR) DRY_RUN=$(DRY_RUN) LOG_FORMAT=$(LOG_FORMAT) \
		$(CARGO) run --release -- run --rules $(RULES_DIR)

build: deps
	$(CARGO) build --release

test: deps fmt lint unit binary-check

# Installs what a fresh Debian machine lacks (a C toolchain for ring, the Rust components).
deps:
	@bash scripts/deps.sh

# The kinds' modules are declared by the registries' macros (signals/mod.rs, actions/mod.rs),
# where cargo fmt does not look: rustfmt checks every file of src/ by name too.
fmt:
	$(CARGO) fmt --all -- --check
	rustfmt --edition 2021 --check $$(find src -name '*.rs' | sort)

format:
	$(CARGO) fmt --all
	rustfmt --edition 2021 $$(find src -name '*.rs' | sort)

lint:
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets
	$(CARGO) test --doc

# The release binary as the image ships it: only libraries distroless cc-debian12 has,
# stripped, `--version` right.
binary-check: deps
	$(CARGO) build --release --locked --bin automaton
	sh scripts/check-binary.sh target/release/automaton

check-rules:
	$(CARGO) run --quiet -- check $(RULES_DIR)

bench:
	$(CARGO) bench --bench engine_tick

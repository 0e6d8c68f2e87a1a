# Every command the README and CI use. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help install browser demo test lint typecheck unit bench bench-peers-env bench-engine proto docs compile uncompile clean

help:
	@echo "make demo   - install, then run the demo server (SQLite, no other service)"
	@echo "make test   - install, then lint, type-check and run the whole test suite"
	@echo "make browser - install Debian's chromium and chromium-driver if missing (console tests)"
	@echo "make bench  - run the quote fan-out benchmark (see docs/performance.md)"
	@echo "make bench-engine - the engine against matching-engine, lightmatchingengine and a bare loop"
	@echo "make proto  - regenerate src/tradews/codecs/pb from proto/tradews/v1/tradews.proto"
	@echo "make docs   - regenerate docs/asyncapi.json and docs/reference.md from the code"
	@echo "make compile   - compile the matching engine with mypyc again (make install does it)"
	@echo "make uncompile - remove those compiled modules (back to pure Python)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

# Node.js peers for the tests (clients written from the published docs and the .proto file).
# Without npm those tests skip with a reason (and fail under TRADEWS_REQUIRE_SERVICES=1).
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the Node.js client tests will be skipped"; \
	fi

install: $(VENV)/.installed $(VENV)/.compiled

# Debian's headless Chromium and its WebDriver for the browser console tests
# (tests/e2e/test_console.py, driven by Selenium); installed once, only when missing.
# Without them (no root, no apt-get) those tests skip with a reason (and fail under
# TRADEWS_REQUIRE_SERVICES=1).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (Debian packages) for the console tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| { apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
		|| echo "chromium could not be installed: the browser console tests will be skipped"; \
	else \
		echo "chromium not found: the browser console tests will be skipped"; \
	fi

# DEMO_ARGS: more options for the server (the tests pick a free port: DEMO_ARGS='--port 0').
demo: install
	$(BIN)/tradews serve --demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy src

# The whole suite on the build `make install` made (compiled), then the engine's own suites
# (domain and property tests, crash recovery, trading end to end) again on the pure-Python
# fallback.
PURE_SUITES := tests/domain tests/e2e/test_crash.py tests/e2e/test_trading.py tests/unit/test_build.py

# pytest-xdist workers: the tests mostly wait on the servers they start (each on its own port,
# database and bus namespace), so two share even a 2-core machine well. PYTEST_WORKERS=0 runs
# them in this one process.
PYTEST_WORKERS ?= 2

unit: install node_modules/.installed browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)
	TRADEWS_PURE_PYTHON=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PURE_SUITES)

test: lint typecheck unit

bench: install node_modules/.installed
	$(BIN)/python bench/quote_fanout.py

# The PyPI matching engines bench/engine_peers.py compares with, in a venv of their own on a
# Python they support (matching-engine needs >= 3.12); never part of the project's install.
PEERS_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) python3.12)
PEERS_VENV   := bench/.venv-peers

$(PEERS_VENV)/.installed:
	$(PEERS_PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet matching-engine==0.1.1 lightmatchingengine==2019.1.4
	touch $@

bench-peers-env: $(PEERS_VENV)/.installed

bench-engine: install bench-peers-env
	$(BIN)/python bench/engine_peers.py

# The AsyncAPI document of the streams and the protocol reference are generated from the code
# and committed; tests/unit/test_asyncapi.py and tests/unit/test_reference.py fail when they are
# stale.
docs: install
	$(BIN)/python -m tradews.app.asyncapi > docs/asyncapi.json
	$(BIN)/python -m tradews.app.reference > docs/reference.md

# The generated protobuf code is committed; tests/unit/test_proto_generated.py fails when it is
# stale. protoc (from grpcio-tools) writes the module and its typing stub.
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto/tradews/v1 \
		--python_out=src/tradews/codecs/pb --pyi_out=src/tradews/codecs/pb \
		proto/tradews/v1/tradews.proto

# The engine's pure, fully typed modules compiled to C extensions with mypyc (part of mypy), in
# place: part of `make install`, rebuilt whenever one of them changes. Python imports the .so
# instead of the .py beside it (tradews/_build.py; TRADEWS_PURE_PYTHON=1 loads the .py files,
# the tested fallback). Edited one? `make install` (or `make compile`) again: the tests refuse
# to run on a compiled module older than its source.
ENGINE_MODULES := src/tradews/domain/orders.py src/tradews/domain/order_book.py \
	src/tradews/domain/ledger.py src/tradews/engine/engine.py

$(VENV)/.compiled: $(ENGINE_MODULES) $(VENV)/.installed
	cd src && ../$(BIN)/mypyc $(patsubst src/%,%,$(ENGINE_MODULES))
	rm -rf src/build
	touch $@

compile: $(VENV)/.installed
	rm -f $(VENV)/.compiled
	$(MAKE) $(VENV)/.compiled

uncompile:
	rm -f $(VENV)/.compiled $(patsubst %.py,%.cpython-*.so,$(ENGINE_MODULES)) src/*__mypyc*.so
	rm -rf src/build

clean: uncompile
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

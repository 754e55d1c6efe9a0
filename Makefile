# One project, two commands: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ABP_HOME ?= $(CURDIR)/.abp

.PHONY: demo test test-fast dagster dashboard lint check-env check-python check-java clean-home cluster-test

# Python for everything; Java only for `make test` (its parity and cluster tests start JVM Spark).
# The demo, `abp`, the dashboard and the SDK run on the embedded engine (Sail) and need no Java.
check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: Python 3.11 or newer is needed ('$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)); install it and run 'make PYTHON=python3.11 ...'." >&2; exit 1; }

check-java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: Java 17 is needed by the tests that compare with JVM Spark and 'java' is not on PATH; install it (Debian/Ubuntu: 'apt-get install -y openjdk-17-jre-headless') and run make test again (make demo needs no Java)." >&2; exit 1; }
	@major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	  if [ -z "$$major" ] || [ "$$major" -lt 17 ]; then \
	  echo "error: the JVM Spark tests need Java 17 or newer, found '$$(java -version 2>&1 | head -n1)'; install openjdk-17 (Debian/Ubuntu: 'apt-get install -y openjdk-17-jre-headless') and put it first on PATH." >&2; exit 1; fi

check-env: check-python check-java

$(BIN)/.installed: pyproject.toml | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[platform,dev]'
	@touch $@

# DEMO_ARGS: e.g. "--days 3 --users 5000" (abp demo --help).
demo: check-python $(BIN)/.installed
	$(BIN)/abp demo $(DEMO_ARGS)

# Two test processes (pytest-xdist), one engine session each; the tests that start JVM Spark
# share one process (xdist_group "jvm"), so their JVMs never run at once.
test: check-python check-java $(BIN)/.installed browser-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25

test-fast: check-python $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not spark and not dagster and not slow and not jvm and not cluster"

dagster: check-python $(BIN)/.installed
	$(BIN)/abp dagster

# The analysts' dashboard (Streamlit) on http://127.0.0.1:8501; it reads the lake, never starts Spark.
dashboard: $(BIN)/.installed
	$(BIN)/abp dashboard

# Headless Chromium for the browser tests (tests/streamlit_app/test_browser.py): Debian's package,
# installed when it is missing and we are root; otherwise those tests skip and say why.
.PHONY: browser-deps
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the browser tests (apt-get install chromium)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "warning: chromium could not be installed; the browser tests will be skipped" >&2; \
	else \
	  echo "note: no chromium and not root; the browser tests will be skipped (install chromium to run them)" >&2; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check ab_pipelines assets jobs tests
	$(BIN)/ruff format --check ab_pipelines assets jobs tests

clean-home:
	rm -rf "$(ABP_HOME)"

# Benchmarks against peers (docs/benchmarks.md, issue 8); peers get venvs of their own in .venv-peers/.
.PHONY: bench
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

# The same pipeline on a real Spark standalone cluster on loopback (a master, two workers whose
# Python lacks the project, a Spark Connect server attached to the master): the demo there
# equals the embedded run (docs/engines.md). It prints the wall times of both runs
# (.cluster-test/last-run.json); `make test` runs it too.
.PHONY: cluster-test
cluster-test: check-python check-java $(BIN)/.installed
	$(BIN)/python -m pytest -q -m cluster
	@cat .cluster-test/last-run.json

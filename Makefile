# flowskid — the two set-up commands are `make demo` and `make test`.
# Every target creates or reuses .venv and installs what it needs, so a fresh clone works.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml package.json 2>/dev/null | cksum | cut -d' ' -f1)
NODE_STAMP := node_modules/.installed-$(shell cat package.json | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench soak mutate venv node mosquitto browser clean help

help:
	@echo "make demo   - create .venv, install flowskid, run the emulated line end to end"
	@echo "make test   - install test dependencies, run lint and the whole test suite"
	@echo "make lint   - ruff, and pyright over edge/ and protocol/ against the MicroPython stubs"
	@echo "make bench  - run the benchmarks, write bench/results.json"
	@echo "make soak   - run the property-based safety suite with many more examples"
	@echo "make mutate - mutation testing of the safety code (about 20 min on 2 cores): bench/mutation.json, docs/mutation-survivors.md"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One install of everything (runtime + test + dev extras): a single stamp keeps re-runs fast.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

$(NODE_STAMP): package.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js >= 18) is needed for the MicroPython WebAssembly runtime: install the Debian package 'nodejs' (and 'npm')"; exit 1; }
	npm install --no-audit --no-fund --loglevel=error
	rm -f node_modules/.installed-*
	touch $@

node: $(NODE_STAMP)

# The tests start their own broker instances; they need the mosquitto binary.
mosquitto:
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the Debian package 'mosquitto'"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "error: the mosquitto broker binary is missing: install the Debian package 'mosquitto' (sudo apt-get install mosquitto)"; exit 1; \
	fi

# The report tests render pages in a real browser (Debian chromium, driven by Playwright
# without a browser download) and PDF pages with poppler's pdftoppm.
browser:
	@if command -v chromium >/dev/null && command -v pdftoppm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the Debian packages 'chromium' and 'poppler-utils'"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null; \
	else \
		echo "error: chromium and pdftoppm are needed for the report tests: install the Debian packages 'chromium' and 'poppler-utils' (sudo apt-get install chromium poppler-utils)"; exit 1; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright -p pyrightconfig.json \
		--typeshedpath "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# pytest-xdist workers: one per core, at most 4 (the broker tests run on a scaled wall clock
# and need CPU headroom); TEST_WORKERS=0 runs the suite in one process.  --dist loadgroup
# hands out single tests, except the groups (xdist_group) that share expensive runs.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)

test: venv node mosquitto browser lint
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: venv node
	$(PY) -m bench.run

# The safety state machines with many more examples than CI runs (slow: minutes to hours).
soak: venv node
	FLOWSKID_SOAK=1 $(VENV)/bin/pytest -q tests/test_safety_properties.py tests/test_campaign_broker.py

# Mutation testing of the safety code (mutmut; slow: see docs/development.md).  Not part of
# `make test` or CI.  Targets, scoring and equivalent mutants: tools/mutation_report.py; the
# pinned test subset: [tool.mutmut] in pyproject.toml.
mutate: venv
	$(PY) -m tools.mutation_report run

demo: venv
	$(VENV)/bin/skid demo

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .ruff_cache .hypothesis mutants

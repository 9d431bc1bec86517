# Two commands do all the set-up on a fresh machine:
#   make run    the main job: one collection run, registry to audited credits
#   make test   the test suite on SQLite, then on PostgreSQL
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
LINTED := shared services tests $(wildcard bench)

.PHONY: run test test-sqlite test-postgres browser wrk up lint format clean install \
	bench-tracking bench-trading bench-ledger

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/salvage demo

up: $(STAMP)
	$(BIN)/salvage up

test: browser test-sqlite test-postgres

# The resident's QR page is tested in headless Chromium: installed from the
# distribution's packages when missing and this is a Debian machine run as root;
# otherwise that test skips locally and fails under CI.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "chromium and chromedriver are missing: the browser test will not run"; \
		fi; \
	fi

test-sqlite: $(STAMP)
	SALVAGE_TEST_DB=sqlite $(BIN)/python -m pytest -q

test-postgres: $(STAMP)
	SALVAGE_TEST_DB=postgres SALVAGE_TEST_POSTGRES_URL=$(POSTGRES_URL) \
		$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)

format: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

# The OsmAnd load is offered by wrk, from the distribution's packages when
# missing and this is a Debian machine run as root; otherwise an asyncio httpx
# loop offers it, which on a small machine competes with the service for CPU.
wrk:
	@if ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq wrk >/dev/null; \
		else \
			echo "wrk is missing: the OsmAnd load falls back to httpx"; \
		fi; \
	fi

bench-tracking: $(STAMP) wrk
	$(BIN)/python bench/tracking.py

bench-trading: $(STAMP)
	$(BIN)/python bench/trading.py

bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger.py

clean:
	rm -rf .salvage .pytest_cache .hypothesis .ruff_cache

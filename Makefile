# Two commands: `make run` (the whole system) and `make test` (the whole suite).
# `make setup` installs every Python package from PyPI through uv. `make test` also starts
# PostgreSQL and RabbitMQ when installed but stopped (deploy/ensure-services.sh) and, as root on
# Debian, installs Chromium and Firefox for the browser tests when missing (deploy/ensure-browsers.sh).

PYTHON ?= python3
# The suite starts services as subprocesses (crash points, standalone, load): without bytecode
# caches every start recompiles the whole dependency tree (about 7 s on a 2-core machine).
unexport PYTHONDONTWRITEBYTECODE
UV_VERSIONS := >=0.5,<1
# uv is $(PYTHON)'s module when it has one or pip can install one; else (Debian's own python3:
# pip refuses with PEP 668, and pip and venv may be missing) the binary deploy/bootstrap-uv.py
# fetches from PyPI into .tools/ with nothing but the standard library; uv then builds .venv on
# $(PYTHON) itself. Decided once, at its first use, after the `uv` target has run.
UV_BIN := .tools/uv
UV = $(eval UV := $(if $(shell $(PYTHON) -m uv --version >/dev/null 2>&1 && echo module),$(PYTHON) -m uv,UV_PYTHON=$(PYTHON) $(UV_BIN)))$(UV)
# auto: distributed when any <SERVICE>_DATABASE_URL is set, else standalone (deploy/run.py decides);
# VS_RUN_MODE in the environment sets it as well (make run MODE=... wins)
MODE ?= $(or $(VS_RUN_MODE),auto)

.PHONY: setup uv run test lint unit soak load bench asyncapi migrate clean

setup: uv
	$(UV) sync --all-packages --frozen

# pip is tried until a uv binary was fetched once; the script keeps one whose version is in range
uv:
	@if $(PYTHON) -m uv --version >/dev/null 2>&1; then :; \
	elif [ ! -e $(UV_BIN) ] && $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv$(UV_VERSIONS)" 2>/dev/null; then :; \
	else $(PYTHON) deploy/bootstrap-uv.py $(UV_BIN) "$(UV_VERSIONS)"; fi

run: setup
	$(UV) run --frozen python deploy/run.py --mode $(MODE)

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

test: setup
	deploy/ensure-services.sh
	deploy/ensure-browsers.sh
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy
	$(UV) run --frozen pytest

unit: setup
	$(UV) run --frozen pytest -m "not slow" shared/tests services

soak: setup
	deploy/ensure-services.sh
	$(UV) run --frozen pytest tests/soak -s

load: setup
	deploy/ensure-services.sh
	$(UV) run --frozen python tests/load/run.py $(LOAD_ARGS)

# Each benchmark prints its figures as ratios to a baseline measured in the same run.
bench: setup
	deploy/ensure-services.sh
	for f in tests/bench/*.py; do echo "== $$f"; $(UV) run --frozen python $$f || exit 1; done

asyncapi: setup
	$(UV) run --frozen vs-asyncapi --output docs/asyncapi.yaml

migrate: setup
	for s in identity teams projects notifications; do $(UV) run --frozen python -m $$s migrate || exit 1; done

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .standalone .tools

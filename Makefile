# Two commands: `make run` (the whole system) and `make test` (the whole suite).
# `make setup` installs every Python package from PyPI through uv. `make test` also starts
# PostgreSQL and RabbitMQ when installed but stopped (deploy/ensure-services.sh) and, as root on
# Debian, installs Chromium and Firefox for the browser tests when missing (deploy/ensure-browsers.sh).

PYTHON ?= python3
# The suite starts services as subprocesses (crash points, standalone, load): without bytecode
# caches every start recompiles the whole dependency tree (about 7 s on a 2-core machine).
unexport PYTHONDONTWRITEBYTECODE
UV := $(PYTHON) -m uv
# auto: distributed when any <SERVICE>_DATABASE_URL is set, else standalone (deploy/run.py decides);
# VS_RUN_MODE in the environment sets it as well (make run MODE=... wins)
MODE ?= $(or $(VS_RUN_MODE),auto)

.PHONY: setup run test lint unit soak load bench asyncapi migrate clean

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
	$(UV) sync --all-packages --frozen

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
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .standalone

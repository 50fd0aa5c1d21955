# Bootstraps everything from python3 alone: a tool venv with a pinned uv, then the project venv
# from uv.lock (hash-checked). `make demo` and `make test` are the two README commands.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: demo test lint typecheck bench sync clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --all-groups --all-extras --quiet
	touch $(STAMP)

sync: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gatewaykit demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples graphs
	$(VENV)/bin/ruff format --check src tests benchmarks examples graphs

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/router_overhead.py

clean:
	rm -rf $(TOOLS) $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two commands: `make demo` (set up, then launch the app) and `make test` (set up, lint, test).
# Both are idempotent: set-up is skipped when requirements.txt and pyproject.toml are unchanged.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xmr-installed

.PHONY: demo test setup setup-dev debs debs-dev lint pytest bench clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) debs

setup-dev: setup debs-dev

debs:
	@bash scripts/install-debs.sh packages.txt

debs-dev:
	@bash scripts/install-debs.sh packages-dev.txt

demo: setup
	$(PY) app.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

pytest: $(STAMP)
	$(PY) -m pytest

test: setup-dev lint pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The two set-up commands are `make run` and `make test`: each creates .venv/ and installs the
# project into it first (make install), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint images clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: one echo episode through a local process, then single-session throughput.
run: install
	$(PY) benchmarks/quickstart_process.py
	$(PY) benchmarks/single_session.py --seconds 1 --rounds 3

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check openenv envs tests benchmarks
	$(VENV)/bin/ruff format --check openenv envs
	$(VENV)/bin/mypy openenv

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache

# The two set-up commands are `make run` and `make test`: each creates .venv/ and installs the
# project into it first (make install), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Env images build FROM this; machines without a registry make it locally (make base-image).
BASE_IMAGE ?= $(shell docker image inspect openenv-base:bookworm >/dev/null 2>&1 \
	&& echo openenv-base:bookworm || echo python:3.11-slim)
# The terminal env's image also needs git and procps: the base plus those (make base-image).
TOOLS_BASE_IMAGE ?= $(shell docker image inspect openenv-base-tools:bookworm >/dev/null 2>&1 \
	&& echo openenv-base-tools:bookworm || echo python:3.11-bookworm)

.PHONY: install ray run test test-floor lint images base-image upstream-venv trainer-venv bench-upstream \
	docs plots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The distribution was called "openenv" before it became openenv-rl: drop that install.
	$(PY) -m pip uninstall --quiet --yes openenv 2>/dev/null || true
	$(PY) -m pip install --quiet -e '.[dev,mcp]'
	touch $(STAMP)

# Ray (the ray extra) for the RayProvider tests, which start a 2-node cluster on loopback: not
# in `install` (it is large, ~0.5 GiB, and `make run` does not need it), but in `make test`.
RAY_STAMP := $(VENV)/.ray-stamp

ray: $(RAY_STAMP)

$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[ray]'
	touch $(RAY_STAMP)

# Upstream OpenEnv in venvs of their own, one per release users still run: openenv-core 0.3.0,
# and `openenv` 0.10 (the newest: MCP tool envs, MCPToolClient). Both packages are called
# `openenv`, as ours is. The interop tests (tests/interop) run against both; the scaling
# benchmark runs 0.3.0.
UPSTREAM_VENV ?= .venv-upstream
UPSTREAM_STAMP := $(UPSTREAM_VENV)/.installed-stamp
UPSTREAM10_VENV ?= .venv-upstream-0.10
UPSTREAM10_STAMP := $(UPSTREAM10_VENV)/.installed-stamp

upstream-venv: $(UPSTREAM_STAMP) $(UPSTREAM10_STAMP)

$(UPSTREAM_STAMP):
	$(PYTHON) -m venv $(UPSTREAM_VENV)
	$(UPSTREAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UPSTREAM_VENV)/bin/python -m pip install --quiet 'openenv-core==0.3.0'
	touch $(UPSTREAM_STAMP)

$(UPSTREAM10_STAMP):
	$(PYTHON) -m venv $(UPSTREAM10_VENV)
	$(UPSTREAM10_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UPSTREAM10_VENV)/bin/python -m pip install --quiet 'openenv==0.10.0'
	touch $(UPSTREAM10_STAMP)

# The trainers (TRL, skyrl-gym, verl) in a venv of their own, so the main one stays light: torch's
# CPU wheel first (from the machine's pip find-links; a plain `torch` would pull ~3 GB of CUDA
# libraries), then the project with its server, coding and trainer extras. tests/integrations
# run the trainers from here (examples/trl_grpo.py trains a few GRPO steps on CPU).
TRAINER_VENV ?= .venv-trainers
TRAINER_STAMP := $(TRAINER_VENV)/.installed-stamp
TORCH ?= torch==2.13.0+cpu

trainer-venv: $(TRAINER_STAMP)

$(TRAINER_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRAINER_VENV)
	$(TRAINER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRAINER_VENV)/bin/python -m pip install --quiet '$(TORCH)'
	$(TRAINER_VENV)/bin/python -m pip install --quiet -e '.[server,coding,terminal,trl,skyrl]' \
		pytest pytest-timeout pytest-asyncio psutil
	@# verl 0.9.1 pins transformers below 5.11, older than TRL 1.16's tool parsing needs: it goes
	@# in without its pins, with what its tool modules import (tests/integrations/test_verl.py).
	$(TRAINER_VENV)/bin/python -m pip install --quiet --no-deps 'verl==0.9.1'
	$(TRAINER_VENV)/bin/python -m pip install --quiet 'ray>=2.41' 'tensordict>=0.8,<=0.10' \
		omegaconf hydra-core codetiming
	touch $(TRAINER_STAMP)

# The main job: 256 echo sessions on local server processes from one asyncio client, against
# the Sans-I/O websockets ceiling, the typical websockets app and a per-step HTTP baseline
# (11 interleaved rounds of 1 s each; ~1 min, ~1.5 min on a fresh clone, install included).
run: install
	$(VENV)/bin/openenv bench --compare --sessions 256 --duration 1 --rounds 11

test: install ray upstream-venv trainer-venv
	$(PY) -m pytest

# The lowest releases pyproject.toml allows for the client's dependencies and the server extra
# (.ci/floors.py pins them), in a venv of their own: the wire, client and server tests on them.
FLOOR_VENV ?= .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed-stamp

$(FLOOR_STAMP): pyproject.toml .ci/floors.py
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python .ci/floors.py > $(FLOOR_VENV)/floors.txt
	$(FLOOR_VENV)/bin/python -m pip install --quiet -e '.[dev]' -c $(FLOOR_VENV)/floors.txt
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider tests/protocol tests/client tests/server

lint: install
	$(VENV)/bin/ruff check openenv envs tests benchmarks
	$(VENV)/bin/ruff format --check openenv envs
	$(VENV)/bin/mypy openenv

# The manual (mkdocs.yml): MkDocs Material + mkdocstrings in the docs extra, built with --strict
# into site/; the plots it shows are drawn from benchmarks/results/ first.
DOCS_STAMP := $(VENV)/.docs-stamp

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

plots: $(DOCS_STAMP)
	$(PY) benchmarks/plots.py

docs: plots
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Hermetic env images: wheels built here, installed in the image with pip --no-index.
images: install
	$(VENV)/bin/openenv build envs/echo_env envs/coding_env --base-image $(BASE_IMAGE)
	$(VENV)/bin/openenv build envs/terminal_env --base-image $(TOOLS_BASE_IMAGE)
	$(VENV)/bin/openenv build envs/gym_env --base-image $(BASE_IMAGE)

# Docker engine (Debian's docker.io) and the local base image openenv-base:bookworm, made with
# debootstrap and cached in /var/cache/openenv, plus openenv-base-tools:bookworm (the base with
# git and procps, for the terminal env): for machines with no container registry. Root.
base-image:
	bash .ci/docker-setup.sh

clean:
	rm -rf $(VENV) $(UPSTREAM_VENV) $(UPSTREAM10_VENV) $(FLOOR_VENV) $(TRAINER_VENV) .build .pytest_cache .mypy_cache \
		.ruff_cache site docs/img

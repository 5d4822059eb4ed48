# One-command entry points. `make test` and `make quick` create .venv on first use.
# PADDLE=cpu installs the CPU wheel; GPU users install paddlepaddle-gpu into .venv first and
# call `make ... PADDLE=none` so it is never replaced (see README).
PYTHON ?= python3
VENV ?= .venv
PADDLE ?= cpu
PY := $(VENV)/bin/python
, := ,
EXTRAS := $(if $(filter cpu,$(PADDLE)),cpu$(,)test,test)

.PHONY: install test quick clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

quick: install
	$(PY) tools/train.py -c experiments/quick.yaml
	$(PY) tools/compare.py output/quick

clean-venv:
	rm -rf $(VENV)

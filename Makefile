# tessera: the two commands a newcomer needs. Everything installs into .venv from PyPI;
# a fresh machine needs only python3, g++ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tessera-installed
JOBS   ?= 2
PRESET ?=

.PHONY: demo test test-all lint clean help

help:
	@echo "make demo      set up .venv, generate the default core, co-simulate a sample layer"
	@echo "               (make demo PRESET=ternary: another preset)"
	@echo "make test      set up .venv, run the whole test suite (slow FPGA builds excluded)"
	@echo "make test-all  also the slow place-and-route runs"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tessera.generators.demo $(PRESET)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist worksteal -q

test-all: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist worksteal -q -m ""

clean:
	@if [ -x $(VENV)/bin/tessera ]; then $(VENV)/bin/tessera clean; else rm -rf build; fi

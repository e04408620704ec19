# Two commands for a fresh machine (see README.md):
#   make demo   install into .venv, then run the demo (server + simulated detector + 100 images to HDF5)
#   make test   install into .venv, then run ruff, the tests and the warning-free docs build
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install test-packages demo test lint docs benchmark clean

install: $(VENV)/.installed

# The client (client/, its own distribution) first, then the server, which depends on it.
$(VENV)/.installed: pyproject.toml setup.py client/pyproject.toml $(wildcard csrc/*.py csrc/*/*.c csrc/*/*.h)
	sh scripts/system-packages.sh
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e './client[redis]'
	STD_DAQ_CLIENT_REQUIREMENT=std-daq-client $(BIN)/python -m pip install -q -e '.[test,docs,redis,ophyd]'
	touch $@

# What only the tests need: redis-server and the headless browser of the web page test.
test-packages:
	sh scripts/system-packages.sh test

demo: install
	$(BIN)/std_daq_demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: lint test-packages
	$(BIN)/python -m pytest
	$(MAKE) docs

benchmark: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/sustained.py
	$(BIN)/python benchmarks/peer_comparison.py

clean:
	rm -rf $(VENV) build docs/_build *.egg-info daq_server/receive/_receiver*.so daq_server/pipeline/_pipeline*.so sim/_sender*.so detectors/_formats*.so

# Quick start:  make demo   |   make test
VENV ?= .venv
PYTEST_ARGS ?= -q -m "not slow"

.PHONY: setup demo test test-all clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/edgevos demo

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-all: setup
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

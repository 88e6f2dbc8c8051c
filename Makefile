# Two commands for a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start a local Kafka and a worker, import sample media (or DIR=...), wait for every thumbnail, summarize.
demo: $(STAMP)
	$(VENV)/bin/regen demo $(DIR)

## Unit and integration tests (integration tests start their own Kafka broker).
test: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## Benchmarks: print each figure as a ratio to a baseline run in the same process.
bench: $(STAMP)
	$(VENV)/bin/python -m bench.thumbnails
	$(VENV)/bin/python -m bench.composite

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

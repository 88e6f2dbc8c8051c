# Two commands for a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start a local Kafka and a worker, import sample media (or DIR=...), wait for every thumbnail, summarize.
demo: $(STAMP)
	$(VENV)/bin/regen demo $(DIR)

## Unit and integration tests (integration tests start their own Kafka broker;
## the dashboard test drives Debian's chromium, installed here once if missing).
test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard test (once)"
	$(SUDO) apt-get install -y -q chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

## Benchmarks: print each figure as a ratio to a baseline run in the same process.
bench: $(STAMP)
	$(VENV)/bin/python -m bench.thumbnails
	$(VENV)/bin/python -m bench.composite
	$(VENV)/bin/python -m bench.requests
	$(VENV)/bin/python -m bench.replay

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# Two commands for a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# Debian's PostgreSQL server: the SQL read model's tests start a private
# cluster of it (tests/postgres.py); they fail, not skip, without it.
POSTGRES := /usr/lib/postgresql
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start a local Kafka and a worker, import sample media (or DIR=...), wait for every thumbnail, summarize.
demo: $(STAMP)
	$(VENV)/bin/regen demo $(DIR)

# The TypeScript client's dependencies, exactly as its lockfile says (npm ci
# also builds it: its prepare script).
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed
$(TS_STAMP): $(TS)/package-lock.json $(TS)/package.json
	cd $(TS) && npm ci --no-audit --no-fund
	touch $(TS_STAMP)

## Unit and integration tests (integration tests start their own Kafka broker;
## the dashboard test drives Debian's chromium and the SQL read model's tests
## Debian's postgresql, each installed here once if missing).
## First the TypeScript client: its generated files checked against schemas/json
## and streams/topics.py, built, and unit-tested; the parity test runs the build.
test: $(STAMP) $(CHROMIUM) $(POSTGRES) $(TS_STAMP)
	cd $(TS) && REGEN_PYTHON=$(abspath $(VENV))/bin/python npm run --silent check:generated
	cd $(TS) && npm run --silent build && npm test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## Static checks: ruff on everything, mypy on the regen package (both configured in pyproject.toml).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -c "$$TYPECHECK_TREE" $(TYPECHECK)
	$(VENV)/bin/mypy

# mypy follows neither setuptools' editable finder nor package-dir (regen.streams
# is the folder streams/): lay out $(TYPECHECK)/regen as symlinks to the folders
# [tool.setuptools.package-dir] names; mypy_path in pyproject.toml points there.
TYPECHECK := build/typecheck
define TYPECHECK_TREE
import pathlib, shutil, sys, tomllib
root, tree = pathlib.Path.cwd(), pathlib.Path(sys.argv[1])
shutil.rmtree(tree, ignore_errors=True)
folders = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(folders.items()):
    link = tree.joinpath(*package.split("."))
    link.parent.mkdir(parents=True, exist_ok=True)
    if "." in package:
        link.symlink_to(root / folder, target_is_directory=True)
    else:
        link.mkdir()
        for module in (root / folder).glob("*.py"):
            (link / module.name).symlink_to(module)
endef
export TYPECHECK_TREE

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard test (once)"
	$(SUDO) apt-get install -y -q chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

$(POSTGRES):
	@echo "installing Debian's postgresql for the SQL read model's tests (once)"
	$(SUDO) apt-get install -y -q postgresql || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql)

## Benchmarks: print each figure as a ratio to a baseline run in the same process.
bench: $(STAMP)
	$(VENV)/bin/python -m bench.thumbnails
	$(VENV)/bin/python -m bench.composite
	$(VENV)/bin/python -m bench.presets
	$(VENV)/bin/python -m bench.requests
	$(VENV)/bin/python -m bench.replay
	$(VENV)/bin/python -m bench.fleet
	$(VENV)/bin/python -m bench.generated
	$(VENV)/bin/python -m bench.image_urls
	$(VENV)/bin/python -m bench.store_lifecycle
	$(VENV)/bin/python -m bench.sql_projector

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache $(TYPECHECK) $(TS)/node_modules $(TS)/dist

# innerlens: the two set-up commands are `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install demo test test-fast bench mlproject server-start server-stop stack-up stack-down stack-status clean

$(BIN)/innerlens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $@

install: $(BIN)/innerlens

## The main job: the self-modeling comparison into the embedded store under mlruns/.
demo: install
	$(BIN)/innerlens self-modeling-comparison --variants baseline,middle_layer --self-model-weights 0.01 --seeds 0,1,2,3,4 --no-gamma-sensitivity --no-llc-at-best
	@echo "see it with:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db"

## Every tier: tests/unit (pure), tests/families (in-process, local store), tests/system (mlflow run, servers, faults).
test: install
	$(BIN)/ruff check src tests bench entrypoints
	$(BIN)/python -m pytest -q

## The unit tier only (pytest -m unit): under two minutes.
test-fast: install
	$(BIN)/python -m pytest -q -m unit

bench: install
	$(BIN)/python bench/tracking_overhead.py

## Regenerate MLproject after changing a Config dataclass (a test checks they agree).
mlproject: install
	$(BIN)/innerlens mlproject > MLproject

server-start: install
	PATH=$(CURDIR)/$(BIN):$$PATH deploy/local-server start mlruns/server 5000

server-stop:
	deploy/local-server stop mlruns/server

## The team stack (PostgreSQL + S3 + authenticated mlflow server); settings in deploy/stack's header.
stack-up stack-down stack-status: install
	PATH=$(CURDIR)/$(BIN):$$PATH deploy/stack $(@:stack-%=%)

clean:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts src/*.egg-info

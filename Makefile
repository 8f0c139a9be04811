# innerlens: the two set-up commands are `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install fashion-mnist demo demo-rounding test test-fast bench mlproject server-start server-stop stack-up stack-down stack-status clean

$(BIN)/innerlens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $@

install: $(BIN)/innerlens

## Fashion-MNIST from Debian's package (the paper's experiment reads it), installed like PostgreSQL.
fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || test -n "$$INNERLENS_FASHION_MNIST" || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
	  sudo apt-get install -y dataset-fashion-mnist

## The main job: the paper's experiment (Premakumar et al.'s MLP, its optimiser and budget) on Fashion-MNIST,
## 8 paired seeds (the fewest at which an exact sign-flip test, Holm over 4 metrics, can reach 0.05) of the
## baseline and self-modeling at AW 10, into the embedded store under mlruns/.
DEMO = --model mlp --task fashion_mnist --regime paper --hidden 128 --variants baseline,last_layer \
       --self-model-weights 10 --seeds 0,1,2,3,4,5,6,7 --no-gamma-sensitivity --llc-at-best false
demo: install fashion-mnist
	$(BIN)/innerlens self-modeling-comparison $(DEMO) $(DEMO_EXTRA)

## Every tier: tests/unit (pure), tests/families (in-process, local store), tests/system (mlflow run, servers, faults).
test: install
	$(BIN)/ruff check src tests bench entrypoints
	$(BIN)/python -m pytest -q

## The unit tier only (pytest -m unit): under two minutes.
test-fast: install
	$(BIN)/python -m pytest -q -m unit

## The demo's rounding control: the same study with the input features relabelled (the same training in exact
## arithmetic, every first-layer sum in another order, in every arm: another float path).
demo-rounding: install fashion-mnist
	$(BIN)/innerlens self-modeling-comparison $(DEMO) --relabel-inputs --study-name demo-rounding-relabelled

bench: install
	$(BIN)/python bench/tracking_overhead.py

## Regenerate MLproject after changing a Config dataclass (a test checks they agree).
mlproject: install
	$(BIN)/innerlens mlproject --write

server-start: install
	PATH=$(CURDIR)/$(BIN):$$PATH deploy/local-server start mlruns/server 5000

server-stop:
	deploy/local-server stop mlruns/server

## The team stack (PostgreSQL + S3 + authenticated mlflow server); settings in deploy/stack's header.
stack-up stack-down stack-status: install
	PATH=$(CURDIR)/$(BIN):$$PATH deploy/stack $(@:stack-%=%)

clean:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts src/*.egg-info

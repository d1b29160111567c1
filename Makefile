PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/quickstart.yaml

.PHONY: install test test-cluster demo lint bench bench-selection bench-pipeline bench-serve clean

install: $(BIN)/alray

$(BIN)/alray: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -e ".[dev]"
	@touch $(BIN)/alray

test: install
	$(BIN)/python -m pytest -q tests -m "not cluster"

# Multi-host tests on network namespaces (root, iproute2): S3, a Ray head, two worker hosts.
test-cluster: install
	$(BIN)/python -m pytest -q -m cluster tests/cluster

demo: install
	$(BIN)/alray compare $(CONFIG) --strategies random,bald --seeds 3 --out runs/demo

lint: install
	$(BIN)/ruff check alray tests benchmarks

bench: bench-selection bench-pipeline bench-serve

bench-selection: install
	$(BIN)/python benchmarks/selection.py

bench-pipeline: install
	$(BIN)/python benchmarks/pipeline_throughput.py

bench-serve: install
	$(BIN)/python benchmarks/serve_load.py --clients 50 --seconds 60

clean:
	rm -rf runs .pytest_cache

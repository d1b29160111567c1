PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/quickstart.yaml

.PHONY: install test test-cluster helm-check demo lint bench bench-selection bench-pipeline bench-serve bench-al clean

install: $(BIN)/alray

# The same script the container image runs (deploy/Dockerfile); torch==2.14.1 torchvision==0.29.1.
$(BIN)/alray: pyproject.toml deploy/install.sh deploy/constraints.txt
	VENV=$(VENV) PY=$(PY) bash deploy/install.sh
	@touch $(BIN)/alray

test: install
	$(BIN)/python -m pytest -q tests -m "not cluster"

# The Helm chart, short of a cluster: helm (fetched once into .tools/) lint --strict and
# template for each values file, Kubernetes and KubeRay CRD schemas, Ray's Serve schema, policies.
helm-check: install
	$(BIN)/python tools/fetch_helm.py
	$(BIN)/python -m pytest -q tests/helm

# Multi-host tests on network namespaces (root, iproute2): S3, a Ray head, two worker hosts.
test-cluster: install
	$(BIN)/python -m pytest -q -m cluster tests/cluster

demo: install
	$(BIN)/alray compare $(CONFIG) --strategies random,bald --seeds 3 --targets 0.9,0.95 --out runs/demo

lint: install
	$(BIN)/ruff check alray tests benchmarks

bench: bench-selection bench-pipeline bench-serve

bench-selection: install
	$(BIN)/python benchmarks/selection.py

bench-pipeline: install
	$(BIN)/python benchmarks/pipeline_throughput.py

bench-serve: install
	$(BIN)/python benchmarks/serve_load.py --clients 50 --seconds 60

# Labels to reach target accuracies per strategy (MNIST, GTSRB, vehicles; 3 seeds) via alray compare.
# Writes benchmarks/results/; run stores under runs/bench-al/. BENCH_AL_ARGS=--quick: smoke run.
bench-al: install
	$(BIN)/python benchmarks/label_efficiency.py $(BENCH_AL_ARGS)

clean:
	rm -rf runs .pytest_cache

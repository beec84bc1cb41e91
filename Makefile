# micrometry: `make demo` runs the workflow on synthetic micrographs; `make test` runs the tests.
# Both create .venv at the repository root on first use (Python 3.11, pip, gcc suffice).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
DEMO_N ?= 8
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv demo test lint report clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,flow,scalebar]"
	touch $(STAMP)

demo: $(STAMP)
	test -d demo/data/images || $(BIN)/micrometry synth demo/data --n $(DEMO_N) --seed 0
	$(BIN)/snakemake --profile profiles/default --cores $(CORES) \
	  --config input_dir=demo/data/images results_dir=demo/results
	@echo ""
	@echo "Results: demo/results/dataset/objects.parquet (one row per object),"
	@echo "         demo/results/dataset/images.parquet (one row per image),"
	@echo "         demo/results/qc/*.png (outline overlays), demo/results/dataset/*.png (plots)."
	@echo "HTML report: $(BIN)/snakemake --report demo/report.html --config input_dir=demo/data/images results_dir=demo/results"

report: $(STAMP)
	$(BIN)/snakemake --report demo/report.html --config input_dir=demo/data/images results_dir=demo/results

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/snakemake --lint --config input_dir=tests/data results_dir=/tmp/micrometry-lint

clean-demo:
	rm -rf demo

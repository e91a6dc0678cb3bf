# Everything runs from a virtual environment that the targets create on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
OUT := out

.PHONY: setup demo test lint bench clean

setup: $(INSTALLED)

# torch first, alone and exact: the CPU wheel of 2.13.0 is on this kind of machine's disk, and
# anything looser pulls gigabytes of CUDA packages.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The product, for now: the stylize CLI on sample images (a photo shipped in scikit-image, a
# style image made by the project).
demo: $(INSTALLED)
	$(PY) -m styletransfer.samples $(OUT)/samples
	$(VENV)/bin/stylize $(OUT)/samples/chelsea.png $(OUT)/samples/swirls.png --preset preview -o $(OUT)/chelsea-swirls.jpg
	@echo "result: $(OUT)/chelsea-swirls.jpg"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) agent/benchmarks/bench_engine.py $(ARGS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache

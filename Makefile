# The README's two commands are `make pipeline` and `make test`; the other targets are steps of them or
# tools of their own (make help lists every target with its `## ` line).
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: pipeline test test-fast setup data download lint bench bench-anchor bench-predict gpu-check ablation study predict readme review soak help

## list the targets, each with its one line
help:
	@awk '/^## / {line = substr($$0, 4); next} /^[a-z][a-z-]*:/ && line {sub(/:.*/, ""); printf "  %-14s %s\n", $$0, line; line = ""} /^$$/ {line = ""}' $(MAKEFILE_LIST)

## set up, pull the data, run every stage, show the metrics
pipeline: data
	dvc repro
	dvc metrics show metrics/evaluate.json
	dvc status

## run the linter and the whole test suite; every test trains in fp32, or in bf16 with `make test PRECISION=bf16`
PRECISION ?= fp32
# the tests spread over one worker more than the machine has cores (pytest-xdist): the e2e tests
# spend part of their time waiting on DVC's queue (test-fast, which computes all the time: one per
# core). Those marked with one xdist_group run on one worker (they share a module's fixtures); the
# slowest listed at the end
WORKERS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0) if \
  hasattr(os, 'sched_getaffinity') else range(os.cpu_count())) + 1)")
PYTEST_ARGS ?= -n $(WORKERS) --dist loadgroup --durations=15
test: setup lint
	TEST_PRECISION=$(PRECISION) pytest $(PYTEST_ARGS)

## the unit tests only, for the edit loop: no dvc or git subprocesses, no queue, no multi-process training
test-fast: WORKERS = auto
test-fast: setup lint
	TEST_PRECISION=$(PRECISION) pytest $(PYTEST_ARGS) -m "not e2e and not soak and not processes"

## create .venv and install the pinned requirements.txt into it
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

## fetch the raw images (one tar archive) from the team's DVC remote (../shared/dvc-storage)
data: setup
	@dvc pull data/raw/cifar10.tar.dvc || { \
	  echo "error: could not pull data/raw/cifar10.tar from the DVC remote 'storage' ($$(dvc config remote.storage.url)); check that it is reachable, or with internet access run \`make download\` to fetch the official CIFAR-10 release instead" >&2; \
	  exit 1; }

## without the remote: download the official CIFAR-10 release into data/raw/cifar10.tar and track it
download: setup
	python -m commands.download --out data/raw/cifar10.tar
	dvc add data/raw/cifar10.tar

## measure training speed against the machine's peak, and the pipeline's overheads (bench/results-<machine>.json, reports/bench.md)
bench: pipeline
	python -m tools.bench

## on a machine with an NVIDIA GPU: the default params trained on it as experiment gpu-check, timed against its bf16 peak
gpu-check: data
	python -m tools.gpu_check

## the default train stage against the reference (airbench94's own code) on the same data, in one run; TRAIN_IMAGES=4096: on a subset (bench/anchor-<machine>.json, reports/bench.md)
bench-anchor: pipeline
	python -m tools.bench --anchor $(if $(TRAIN_IMAGES),--train-images $(TRAIN_IMAGES)) $(if $(BENCH_PRECISION),--precision $(BENCH_PRECISION))

## images per second of `make predict` on the 10,000 test images as files, against the evaluate stage (bench/predict-<machine>.json)
bench-predict: pipeline
	python -m tools.bench --predict

## what each piece of the training recipe is worth: queued DVC experiments at a shorter budget (reports/ablation.md)
ablation: pipeline
	python -m experiments.ablation $(if $(SHARD),--shard $(SHARD))

## the optimizer study: self-widening lr and weight-decay sweeps, then every optimizer over 3 seeds, as queued DVC experiments
study: pipeline
	python -m experiments.study $(if $(SHARD),--shard $(SHARD))

## classify your own images with the trained model: make predict IMAGES="photo.jpg my-folder/ photos.tar" [OUT=table.csv]
predict: setup
	@test -n "$(IMAGES)" || { echo 'error: name the images: make predict IMAGES="photo.jpg my-folder/" (files, folders, tar archives)' >&2; exit 2; }
	python -m commands.predict $(IMAGES) $(if $(OUT),--out $(OUT))

## a Markdown review of two revisions or experiments (params, metrics, fit, figures): review/report.md
OLD ?= main
NEW ?= workspace
review: setup
	python -m experiments.review $(OLD) $(NEW)

## rewrite the README's generated blocks from metrics/ (tests/test_readme.py checks them)
readme: setup
	python -m tools.readme

## 20 experiments in a row on tiny data, then exp remove, exp remove -A and gc -w: workspace and cache stay consistent
soak: setup
	pytest -m soak -s -q

## ruff, and the GitHub workflows against GitHub's schema (check-jsonschema ships it: no network needed)
lint: setup
	ruff check .
	ruff format --check .
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

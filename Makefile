# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install-mlflow mlflow-server
.PHONY: run pipeline serve test test-fast lint check-deploy bench install install-dev clean gate compare \
        quality-report docs audit image image-test pre-commit-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installing is skipped while the requirements are unchanged (stamp files inside .venv).
$(VENV)/.stamp-run: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.stamp-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.stamp-run

install: $(VENV)/.stamp-run
install-dev: $(VENV)/.stamp-dev

## install-mlflow / mlflow-server: the optional MLflow client in .venv, and an MLflow tracking
## server in its own .venv-mlflow (run it: .venv-mlflow/bin/mlflow server; see docs/operations.md)
$(VENV)/.stamp-mlflow: requirements-mlflow.txt $(VENV)/.stamp-dev
	$(BIN)/python -m pip install -q -r requirements-mlflow.txt
	touch $@
install-mlflow: $(VENV)/.stamp-mlflow
.venv-mlflow/.stamp: requirements-mlflow-server.txt
	$(PYTHON) -m venv .venv-mlflow
	.venv-mlflow/bin/python -m pip install -q -r requirements-mlflow-server.txt
	touch $@
mlflow-server: .venv-mlflow/.stamp

## run: install, run the whole pipeline on the default source, then serve the API
run: install pipeline serve

pipeline: install
	$(BIN)/python -m pipeline

serve: install
	$(BIN)/python api_service.py --host $(HOST) --port $(PORT)

## test: install what tests need and run them
test: install-dev
	$(BIN)/python -m pytest

test-fast: install-dev
	$(BIN)/python -m pytest -m "not slow"

lint: install-dev check-deploy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## check-deploy: hadolint and promtool on the deployment files (installs promtool when missing)
check-deploy: install-dev
	bash scripts/install-promtool.sh
	$(BIN)/hadolint --failure-threshold style Dockerfile
	promtool check config deploy/prometheus.yml
	promtool check rules deploy/alerts.yml
	promtool test rules deploy/alerts_test.yml

## image: build the image (IMAGE) on BASE_IMAGE; the default base is built locally with
## debootstrap (scripts/build-base-image.sh, skipped when it exists). Needs a Docker daemon.
IMAGE      ?= crypto-forecast:local
LOCAL_BASE := crypto-forecast-base:bookworm
BASE_IMAGE ?= $(LOCAL_BASE)
PIP_CERT   ?= $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),/etc/ssl/certs/ca-certificates.crt)
image:
	@if [ "$(BASE_IMAGE)" = "$(LOCAL_BASE)" ]; then BASE_IMAGE=$(LOCAL_BASE) bash scripts/build-base-image.sh; fi
	docker build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg PIP_CERT=$(PIP_CERT) \
	  -t $(IMAGE) .

## image-test: build the image, then run it (API and scheduler containers, tests/test_image.py)
image-test: install-dev
	bash scripts/ensure-docker.sh
	$(BIN)/python -m pytest -q tests/test_image.py

## audit: known vulnerabilities in the pinned requirements (pip-audit); fails on any found
AUDIT_REQUIREMENTS := $(sort $(wildcard requirements*.txt))
audit: install-dev
	$(BIN)/python scripts/audit.py $(AUDIT_REQUIREMENTS)

## pre-commit-check: the hooks of .pre-commit-config.yaml parse and their tools are installed
pre-commit-check: install-dev
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml
	$(BIN)/python -m pytest -q tests/test_pre_commit.py

## gate: model-quality gate on ../shared/data (BTC 1d, BTC 1h, ETH 1d); protocol and models come
## from quality_baseline.json. Exit 0 = holds, 1 = a rule failed, 2 = bad usage or data.
SHARED_DATA ?= ../shared/data
GATE_RUNS := bitcoin:1d:bitstamp_btcusd_1d_2014-2021.csv \
             bitcoin:1h:bitstamp_btcusd_1h_2018-2021.csv \
             ethereum:1d:coingecko_eth-usd_1d_2015-2021.csv
gate: install
	@rc=0; for run in $(GATE_RUNS); do \
	  coin=$${run%%:*}; rest=$${run#*:}; freq=$${rest%%:*}; file=$${rest#*:}; \
	  $(BIN)/python compare_models.py --gate --baseline quality_baseline.json --no-plots \
	    --coin $$coin --freq $$freq --data $(SHARED_DATA)/$$file; \
	  s=$$?; if [ $$s -gt $$rc ]; then rc=$$s; fi; \
	done; exit $$rc

## compare: rolling-origin model comparison report, e.g. make compare ARGS="--coin bitcoin --freq 1h"
ARGS ?= --coin bitcoin --freq 1d
compare: install
	$(BIN)/python compare_models.py $(ARGS)

## quality-report: every registered model on ../shared/data (BTC 1d/1h, ETH 1d), 60 origins each;
## writes reports/quality/quality.md and quality.json (~4 min on 2 cores; not part of CI)
quality-report: install
	$(BIN)/python bench/quality_report.py --data-dir $(SHARED_DATA) --n-jobs 2

bench: install-dev
	$(BIN)/python bench/run_all.py

## docs: build the documentation site into site/ (strict: a broken link or anchor fails)
docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .venv-mlflow .mypy_cache .ruff_cache .pytest_cache

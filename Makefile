# The credit-risk MLOps platform: one entry point for set-up, code generation, checks, tests and the demo.
#
#   make demo    the main job on the embedded profile (sets everything up first)
#   make test    every check and test CI runs (sets everything up first); every step runs even when
#                an earlier one fails, and a summary at the end lists the failed steps (exit 1)
#   make test-fast  the edit-run loop: every suite on the embedded profile, no end-to-end, no slow test
#
# Set-up needs only python3 (any 3.8+) and npm: it installs a pinned uv into .tools/, finds Python 3.12
# (scripts/find-python; on a machine without one, uv downloads it), and syncs one locked environment
# per deployable (docs/design.md, "Environments").

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := $(CURDIR)/.tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON := $(shell UV=$(UV) $(CURDIR)/scripts/find-python)
# Every deployable has its own pyproject.toml + uv.lock (and later its own image).
DEPLOYABLES := services/feature-service services/training-service services/registry-gateway \
               services/inference-gateway services/drift-service services/model-server pipelines
PROFILE ?= embedded
export PROFILE
# The prerequisite of every check and test target: `make lint` alone sets everything up first.
# scripts/run-suites runs each step of `make test` as `make SETUP= <step>`: set-up ran once, before.
SETUP := setup

# The steps of `make test`, each a target of its own. Every suite runs in its own pytest process:
# libs/ apart from tests/ (the libraries' tests configure OpenTelemetry and instrument gRPC
# in-process, the service kit's fixtures, which must not leak into the end-to-end callers of
# tests/e2e), and each deployable's own tests in its own environment (those that have tests).
LINT_STEPS := lint/ruff lint/format lint/mypy lint/buf
LIB_SUITES := test-suite/libs test-suite/tests
SERVICE_SUITES := $(foreach d,$(DEPLOYABLES),$(if $(wildcard $(d)/tests),test-suite/$(d)))
TEST_STEPS := check-protos check-envs check-pipelines $(LINT_STEPS) $(LIB_SUITES) $(SERVICE_SUITES)
RUN_SUITES = MAKE="$(MAKE)" $(CURDIR)/scripts/run-suites
# `make test-fast`: the suites of `make test` (no lint, no checks) without the tests marked real (the
# real profile's servers), e2e (services as processes) or slow (many seconds each: statistical or
# multi-process runs, all in `make test`).
FAST_MARKERS := not real and not e2e and not slow
FAST_LIB_SUITES := $(patsubst test-suite/%,test-fast/%,$(LIB_SUITES))
# The registry-gateway's and the model-server's tests all need an MLflow server with logged models
# (and the model-server's runtimes) first, a minute or more before their first test: `make test` only.
FAST_SERVICE_SUITES := $(patsubst test-suite/%,test-fast/%,$(filter-out \
    test-suite/services/registry-gateway test-suite/services/model-server,$(SERVICE_SUITES)))


.PHONY: help setup uv node envs lock protos check-protos check-envs pipelines check-pipelines lint format test test-fast test-libs test-services demo clean
.PHONY: $(LINT_STEPS) $(LIB_SUITES) $(SERVICE_SUITES) $(FAST_LIB_SUITES) $(FAST_SERVICE_SUITES)

help:
	@echo "make help          this list"
	@echo "make demo          run the main job (embedded profile; PROFILE=real for Redis + PostgreSQL)"
	@echo "make test          every check and test CI runs (all of them; the failed ones listed at the end)"
	@echo "make test-fast     the edit-run loop: every suite, embedded profile, no end-to-end or slow test"
	@echo "make setup         create every environment (uv, Python 3.12, one locked env per deployable, buf)"
	@echo "make lock          re-lock every environment after a dependency change"
	@echo "make protos        regenerate the Python contract code from protos/ (pinned grpcio-tools)"
	@echo "make check-protos  buf lint, buf breaking against the released baseline, stale generated code"
	@echo "make check-envs    import the contracts and the telemetry library in every environment"
	@echo "make pipelines     compile the Kubeflow pipelines to IR YAML (pipelines/compiled/, committed)"
	@echo "make check-pipelines  fail when the committed pipeline YAML is stale"
	@echo "make test-libs     the libraries' tests and tests/ (contracts, end to end), in the root environment"
	@echo "make test-services  each deployable's own tests, in its own environment"
	@echo "make test-suite/<libs|tests|services/NAME|pipelines>  one suite; make test-fast/<...>  its fast part"
	@echo "make lint/<ruff|format|mypy|buf>  one linter"
	@echo "make lint          ruff check, ruff format --check, mypy, buf lint"
	@echo "make format        ruff --fix and ruff format (rewrites files)"
	@echo "make clean         remove every environment, node_modules, .tools and .run"

$(UV):
	@echo "--> installing uv $(UV_VERSION) into .tools/"
	python3 -m venv $(TOOLS)/uv-venv
	$(TOOLS)/uv-venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	mkdir -p $(TOOLS)/bin && ln -sf ../uv-venv/bin/uv $(UV)

uv: $(UV)

node_modules/.bin/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.bin/buf

# --locked: a pyproject.toml changed without `uv lock` fails here instead of drifting silently.
# Progress: each environment's number and time, and uv's own lines (resolve, download, install, with
# their times); in a terminal uv's live progress bars too. Without a terminal (a CI log) uv's list of
# installed packages is left out (hundreds of lines on a fresh machine).
envs: $(UV)
	@echo "--> Python for every environment: $(UV_PYTHON)"
	@set -- . $(DEPLOYABLES); i=0; for d in "$$@"; do i=$$((i + 1)); start=$$SECONDS; \
	  echo "--> environment $$i/$$#: $$([ $$d = . ] && echo 'the root one (libraries, tests, tools)' || echo $$d)"; \
	  if [ -t 2 ]; then (cd $$d && $(UV) sync --locked); \
	  else (cd $$d && $(UV) sync --locked 2>&1 | awk '!/^ [-+~] /{ print; fflush() }'); fi; \
	  echo "    ready in $$((SECONDS - start)) s"; done

setup: envs node

# Re-lock every environment: needed after changing the dependencies of a deployable or of a library
# they share (a path dependency's metadata is part of each lock).
lock: $(UV)
	$(UV) lock --quiet
	@for d in $(DEPLOYABLES); do echo "--> lock $$d"; (cd $$d && $(UV) lock --quiet); done

protos: $(UV)
	$(UV) run --locked scripts/gen-protos

check-protos: $(SETUP)
	$(UV) run --locked scripts/check-protos

check-envs: $(SETUP)
	$(UV) run --locked scripts/check-envs . $(DEPLOYABLES)

# The compiled pipelines are committed (what a Kubeflow cluster runs); CI fails when they are stale.
# CREDITRISK_PIPELINES_IMAGE=<image> make pipelines compiles for another components' image.
pipelines: setup
	cd pipelines && $(UV) run --locked python -m creditrisk_pipelines.compile

check-pipelines: $(SETUP)
	cd pipelines && env -u CREDITRISK_PIPELINES_IMAGE $(UV) run --locked python -m creditrisk_pipelines.compile --check

# Each step runs even when an earlier one fails (scripts/run-suites); `make lint/mypy` runs one.
lint: setup
	@+$(RUN_SUITES) --title "make lint" $(LINT_STEPS)

lint/ruff: $(SETUP)
	$(UV) run --locked ruff check .

lint/format: $(SETUP)
	$(UV) run --locked ruff format --check .

lint/mypy: $(SETUP)
	$(UV) run --locked mypy -p creditrisk_kit -p creditrisk_telemetry -p creditrisk_devstack -p creditrisk_testing -p creditrisk_model_artifacts -p creditrisk_clients -p creditrisk_products

lint/buf: $(SETUP)
	node_modules/.bin/buf lint

format: $(UV)
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

# The suites (see TEST_STEPS): `make test-suite/libs`, `make test-suite/services/drift-service`
# run one; test-libs and test-services run theirs, each even when an earlier one failed.
# Each suite's temporary files (the end-to-end stack's logs among them) stay in
# $(TEST_TMP)/<suite> until the suite runs again: a failure can be read after the run.
TEST_TMP := /tmp/creditrisk-tests-$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-8)

$(LIB_SUITES): test-suite/%: $(SETUP)
	mkdir -p $(TEST_TMP)
	$(UV) run --locked pytest $* --basetemp=$(TEST_TMP)/$*

$(SERVICE_SUITES): test-suite/%: $(SETUP)
	mkdir -p $(TEST_TMP)
	cd $* && $(UV) run --locked pytest -p no:cacheprovider --basetemp=$(TEST_TMP)/$(notdir $*)

$(FAST_LIB_SUITES): test-fast/%: $(SETUP)
	mkdir -p $(TEST_TMP)
	$(UV) run --locked pytest $* -m "$(FAST_MARKERS)" --basetemp=$(TEST_TMP)/fast-$*

$(FAST_SERVICE_SUITES): test-fast/%: $(SETUP)
	mkdir -p $(TEST_TMP)
	cd $* && $(UV) run --locked pytest -p no:cacheprovider -m "$(FAST_MARKERS)" --basetemp=$(TEST_TMP)/fast-$(notdir $*)

# The edit-run loop (see FAST_MARKERS): each suite even when an earlier one failed, as `make test`.
test-fast: setup
	@+$(RUN_SUITES) --title "make test-fast" $(FAST_LIB_SUITES) $(FAST_SERVICE_SUITES)

test-libs: setup
	@+$(RUN_SUITES) --title "make test-libs" $(LIB_SUITES)

test-services: setup
	@+$(RUN_SUITES) --title "make test-services" $(SERVICE_SUITES)

# Every step, each with its header and wall time, even after a failure; exit 1 at the end with
# "FAILED: <steps>" when any failed (CI: .ci/run).
test: setup
	@+$(RUN_SUITES) --title "make test" $(TEST_STEPS)

demo: setup
	$(UV) run --locked python scripts/demo.py

clean:
	rm -rf .run .venv $(addsuffix /.venv,$(DEPLOYABLES)) node_modules .tools

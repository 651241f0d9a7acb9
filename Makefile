# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GAME   ?= galaxy-raiders
PYTEST_ARGS ?=

UV_VERSION := 0.13.9
UV     := $(BIN)/uv

.PHONY: demo test install chromium lock bench mutation lint synth diff deploy clean

$(UV):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# exactly the locked (tested) versions, hash-checked, then the project itself without dependencies
$(STAMP): pyproject.toml requirements/all.txt | $(UV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements/all.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# Re-resolve the four hashed locks after a dependency change in pyproject.toml or
# requirements/{glue,lambda}.in (existing pins are kept where still allowed; LOCK_ARGS=--upgrade
# moves every pin to the newest allowed version). all.txt: everything `make install` installs, for
# Python 3.11 on any OS; glue.txt: the Glue jobs' closure for Glue 5.0 (cp311, manylinux_2_34 =
# Amazon Linux 2023); image.txt: the core + the `image` extra for the SageMaker image (cp311,
# manylinux_2_28); lambda.txt: the Lambdas' closure (cp311, manylinux_2_17: the python3.11 runtime
# runs Amazon Linux 2). glue.txt, image.txt and lambda.txt are constrained to all.txt's versions.
LOCK_ARGS ?=
LOCK = UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile --quiet --generate-hashes --python-version 3.11 $(LOCK_ARGS)
lock: | $(UV)
	$(LOCK) pyproject.toml --all-extras --universal -o requirements/all.txt
	$(LOCK) requirements/glue.in -c requirements/all.txt --python-platform x86_64-manylinux_2_34 -o requirements/glue.txt
	$(LOCK) pyproject.toml --extra image -c requirements/all.txt --python-platform x86_64-manylinux_2_28 \
		-o requirements/image.txt
	$(LOCK) requirements/lambda.in -c requirements/all.txt --python-platform x86_64-manylinux_2_17 \
		-o requirements/lambda.txt

demo: $(STAMP)
	$(BIN)/ltv demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

# Debian's headless Chromium (+ the DejaVu fonts the report's plots are laid out with) for
# tests/test_report_browser.py; installed once, as root only. Elsewhere that test skips, saying why.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core) \
	      || echo "could not install chromium: the report's browser test will skip"; \
	  else echo "no $(CHROMIUM) and not root with apt-get: the report's browser test will skip"; fi; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/simulator.py

# mutation testing of the safety-critical modules against their fast tests (not part of `make test`;
# benchmarks/mutation.py has the module -> tests map; MODULES="promotion runs" runs some of them)
MODULES ?=
mutation: $(STAMP)
	$(BIN)/python benchmarks/mutation.py $(MODULES)

clean:
	rm -rf lake cdk.out .pytest_cache

# --- AWS (docs/deploy.md): the CDK CLI pinned in package.json; synthesis needs no AWS access ---
CDK     := npx --no-install cdk
CDK_ENV := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 LTV_CONFIG_DIR=config/games
# `make synth` synthesises every game unless GAME is given; diff and deploy need an explicit GAME
GAME_CTX = $(if $(filter file,$(origin GAME)),,-c game=$(GAME))
NEED_GAME = $(if $(filter file,$(origin GAME)),$(error give the game: make $@ GAME=<id> (config/games/<id>.yaml)))

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

synth: $(STAMP) node_modules/.installed
	rm -rf cdk.out
	$(CDK_ENV) $(CDK) synth --no-lookups --no-notices --quiet $(GAME_CTX)
	$(BIN)/cfn-lint cdk.out/*.template.json || [ $$(( $$? & 2 )) -eq 0 ]

diff: $(STAMP) node_modules/.installed
	$(NEED_GAME)
	$(CDK_ENV) $(CDK) diff --no-notices -c game=$(GAME)

deploy: $(STAMP) node_modules/.installed
	$(NEED_GAME)
	$(CDK_ENV) $(CDK) deploy --all --no-notices --require-approval broadening -c game=$(GAME)

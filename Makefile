# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GAME   ?= galaxy-raiders
PYTEST_ARGS ?=

.PHONY: demo test install bench lint synth diff deploy clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[aws,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ltv demo

test: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/simulator.py

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

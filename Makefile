# apex-grpc developer commands. Every target creates or refreshes .venv by
# itself: a newcomer needs nothing installed but Python 3.11+.
#
#   make demo       local server + the seed snippets (README's first command)
#   make test       lint, drift check, full test suite, oldest-deps suite
#   make bench      benchmarks against raw grpcio (add ARGS=--quick)
#   make generate   regenerate generated/ from protos/
#   make docs       the documentation site (docs/, mkdocs.yml) into build/site
#   make polyglot   the TypeScript, browser and Go examples, generated, built and run
#   make mutate     mutation testing of the costliest modules (ARGS=retry ...)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
CODEGEN := $(VENV)/codegen
OLDEST_VENV ?= .venv-oldest
REFERENCE := reference/apex_v1_reference.binpb
PYTEST_ARGS ?=

.PHONY: venv generate check-generated lint format docs test test-oldest pytest polyglot bench demo serve clean mutate

venv: $(STAMP)

# Re-installs when pyproject.toml changes; `make venv` on a fresh clone builds it.
# tools/pip_install.py is pip install -q, but for a package it compiles (llama-cpp-python
# where no wheel fits): it says so, with the time to expect, and prints a line every 30 s;
# it compiles llama.cpp for this CPU's instruction sets, without AMX (tools/llama_build.py;
# a CMAKE_ARGS of yours wins). tools/engine_check.py then has the local engine answer in a
# child process and, if that crashes, rebuilds it with conservative flags: the stamp is
# written only once the engine answers (or is not installed).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing apex-grpc[dev] into $(VENV) (first run takes a few minutes)"
	@start=$$(date +%s); \
	$(PY) tools/pip_install.py -e '.[dev]' && \
	$(PY) tools/engine_check.py && \
	echo "set-up took $$(( $$(date +%s) - start ))s"
	@touch $@

$(CODEGEN)/.installed: tools/codegen-requirements.txt | $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(CODEGEN) -r $<
	@touch $@

generate: $(STAMP) $(CODEGEN)/.installed
	$(PY) tools/codegen.py --protoc-path $(CODEGEN)

check-generated: $(STAMP) $(CODEGEN)/.installed
	$(PY) tools/codegen.py --protoc-path $(CODEGEN) --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --config-file pyproject.toml tests/typing/usage.py
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking protos --against $(REFERENCE)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/buf format -w

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The oldest supported grpcio/protobuf (tools/oldest-constraints.txt), in a
# venv of its own, running the tests marked `oldest`.
test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest -m oldest -p no:cacheprovider -q $(PYTEST_ARGS)

$(OLDEST_VENV)/.installed: pyproject.toml tools/oldest-constraints.txt
	@test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	  -c tools/oldest-constraints.txt -e '.[server,test]'
	@touch $@

# The documentation site, built offline (no fonts, inventories or plugins that
# fetch) and --strict: a broken link, reference or include fails the build.
# NO_MKDOCS_2_WARNING silences Material's banner about a future MkDocs.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint check-generated docs pytest test-oldest

# The contract from other languages (examples/typescript, examples/go):
# generate with buf, build, run against a local echo server. Part of `make
# test` too; Go is skipped, with the apt-get line to install it, where absent.
polyglot: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -v -rs tests/polyglot $(PYTEST_ARGS)

# Mutation testing of the modules whose bugs cost users most; the last score per
# module goes to tests/MUTATION.md. Too slow for `make test`. ARGS=<module ...>
# runs some of them (tools/mutate.py --help).
mutate: $(STAMP)
	$(PY) tools/mutate.py $(ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

demo: $(STAMP)
	$(PY) examples/demo $(ARGS)

serve: $(STAMP)
	$(BIN)/apex-grpc serve $(ARGS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .mypy_cache .ruff_cache .pytest_cache build dist mutants
	rm -rf examples/typescript/{node_modules,gen,dist} examples/go/{gen,apex-example}

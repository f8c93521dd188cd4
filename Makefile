# realsynth — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# torch/torchvision are installed first with plain pip (pinned releases that resolve from local
# files on our machines); the project install then finds them satisfied and downloads no CUDA stack.
# A new venv takes ~7.3 GB (torch's CUDA build); say so up front rather than fail half-installed.
NEED_KB := 8000000

$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ ! -x $(BIN)/python ] && [ "$$free" -lt $(NEED_KB) ]; then \
	  echo "setup: .venv needs about 8 GB of free disk (torch, DVC, DALI); $$((free / 1024)) MB free in $(CURDIR)" >&2; exit 1; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[s3,ray,test]'
	touch $(STAMP)

demo: setup
	dvc repro
	@python -m stages.evaluate --summary

test: setup
	python -m pytest -q

bench: setup
	python bench/ingest.py
	python bench/degrade.py
	python bench/domain_ops.py
	python bench/loader.py
	python bench/train_step.py

clean:
	rm -rf $(VENV)

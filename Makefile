# Two commands do all the set-up on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this project's machines; override for a CUDA build, e.g. TORCH=torch.
TORCH ?= torch==2.13.0

.PHONY: install run test lint bench sample clean pacs-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,train,sample,report,fast]"
	touch $@

run: install
	$(VENV)/bin/brainsr

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n 2 -q

# ruff (lint and format) and mypy (default strictness) on the Qt-free package; ruff's lint on the viewer too
lint: install
	$(VENV)/bin/ruff check srgan viewer
	$(VENV)/bin/ruff format --check srgan
	$(VENV)/bin/mypy srgan

bench: install
	$(PY) benchmarks/bench_scan.py
	$(PY) benchmarks/bench_inference.py --threads 2
	$(PY) benchmarks/bench_train.py
	QT_QPA_PLATFORM=offscreen $(PY) benchmarks/bench_ui_stall.py

# a throwaway local Orthanc (apt-get install orthanc orthanc-dicomweb) loaded with the bundled sample, and the PACS
# window connected to it: search, retrieve, and the retrieved study opens in the viewer
pacs-demo: install
	$(PY) -m viewer.pacs_window

sample: install
	$(PY) resources/sample/make_sample.py

clean:
	rm -rf $(VENV) build *.egg-info

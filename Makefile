# babeltower: `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment (.venv) first when it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.babeltower-installed

.PHONY: env demo demo-contrastive demo-distill demo-t2i demo-asr demo-vqa demo-ocr serve test test-slow test-gpu bench

env: $(STAMP)

# uv installs the pinned lock in ~20 s; plain pip is the fallback (~2 min).
$(STAMP): pyproject.toml requirements/lock.txt requirements/test.txt
	@if ! $(PYTHON) -m uv --version >/dev/null 2>&1; then $(PYTHON) -m pip install -q uv==0.13.9 || true; fi
	@if $(PYTHON) -m uv --version >/dev/null 2>&1; then \
		$(PYTHON) -m uv venv -q --allow-existing --python $(PYTHON) $(VENV) && \
		$(PYTHON) -m uv pip install -q --python $(PY) -r requirements/lock.txt -r requirements/test.txt && \
		$(PYTHON) -m uv pip install -q --python $(PY) --no-deps -e . ; \
	else \
		$(PYTHON) -m venv $(VENV) && \
		$(PY) -m pip install -q -r requirements/lock.txt -r requirements/test.txt && \
		$(PY) -m pip install -q --no-deps -e . ; \
	fi
	@touch $(STAMP)

# The main job: every registered head's demo (distillation, the contrastive head on the
# frozen multilingual-e5-small, text-to-image, speech, VQA, OCR), then one unified
# report in runs/demo/eval. One head alone: make demo-<head> (demo-t2i, demo-asr and
# demo-vqa reuse the text encoders a previous `make demo` wrote).
demo: env
	$(PY) -m babeltower.cli demo all --workdir runs/demo --overwrite

demo-contrastive: env
	$(PY) -m babeltower.cli demo contrastive --workdir runs/demo --overwrite

demo-distill: env
	$(PY) -m babeltower.cli demo distill --workdir runs/demo --overwrite

demo-t2i: env
	$(PY) -m babeltower.cli demo t2i --workdir runs/demo --overwrite

demo-asr: env
	$(PY) -m babeltower.cli demo asr --workdir runs/demo --overwrite

demo-vqa: env
	$(PY) -m babeltower.cli demo vqa --workdir runs/demo --overwrite

demo-ocr: env
	$(PY) -m babeltower.cli demo ocr --workdir runs/demo --overwrite

# The local web demo of every head (the main job's models by default)
serve: env
	$(PY) -m babeltower.cli serve

test: env
	$(PY) -m pytest -q

test-slow: env
	$(PY) -m pytest -q -m slow

test-gpu: env
	$(PY) -m pytest -q -m gpu

bench: env
	$(PY) benchmarks/bench_contrastive.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_t2i.py
	$(PY) benchmarks/bench_asr.py

# Issue 16's reliability suite: 2-rank DDP (gloo, CPU) with uneven shards and corrupt
# samples repeated 10 times, and kill -9 mid-epoch + exact resume.
.PHONY: test-reliability
test-reliability: env
	$(PY) -m pytest -q -m reliability tests/reliability -s

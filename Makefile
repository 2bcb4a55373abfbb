# Two commands on a fresh machine: `make book` builds the HTML book, `make test` runs every test.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test venv models benchmarks clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	@start=$$(date +%s); \
	$(VENV)/bin/jupyter-book build . -W --keep-going && \
	echo "book built in $$(( $$(date +%s) - start )) s: open _build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest

models: $(STAMP)
	$(PY) -m lib train all

benchmarks: $(STAMP)
	$(PY) benchmarks/bench_attack.py
	$(PY) benchmarks/bench_spectral.py

clean:
	rm -rf _build data/cache

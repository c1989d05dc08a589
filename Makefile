# Stampede Lab. The two commands: `make book` (regenerate and build the book) and `make test`.
# Each one sets up what it needs: a virtualenv with pinned packages and redis-server (and
# chromium for the browser check) through apt-get when they are missing.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
DURATION ?=
SET      ?= pods=6 origin_latency_ms=100 rate=200
ONLY     ?=
LAB_ARGS ?=
CHAPTERS := $(sort $(wildcard chapters/[0-9]*.ipynb))
SITE     := book/_build/site
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup system system-browser test lint unit notebooks browser figures html book lab clean docker-test off-defaults

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,book,peers]'
	touch $@

system:
	@scripts/ensure-system.sh

# chromium only where a target drives it (the browser tests, the book's browser check): a hub
# user without root who lacks it can still `make setup` and `make lab`.
system-browser:
	@scripts/ensure-system.sh --with-browser

setup: $(STAMP) system  ## virtualenv + pinned packages + redis-server

lint: setup  ## ruff and mypy
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/mypy

unit: setup system-browser  ## pytest: package, lab, HTTP, CLI
	$(BIN)/pytest -q tests

notebooks: setup  ## execute every chapter with nbval (STAMPEDE_DURATION_S shortens runs)
	STAMPEDE_DURATION_S=$${STAMPEDE_DURATION_S:-25} $(BIN)/pytest -q --nbval-lax chapters/ -p no:cacheprovider

docker-test: setup  ## the compose and Swarm stacks for real (installs docker.io, compose, debootstrap)
	@scripts/ensure-docker.sh
	STAMPEDE_DOCKER_TEST=1 $(BIN)/pytest -q -raP -p no:cacheprovider tests/test_compose_stack.py

browser: setup system-browser  ## open every built page in headless Chromium, offline
	$(BIN)/python tools/check_book.py book/_build/html
	STAMPEDE_BOOK_BUILT=1 $(BIN)/pytest -q -p no:cacheprovider \
	    tests/test_publishing.py::test_the_built_book_launch_links_name_this_repository

# Each chapter is executed once: the book build's papermill pass is the chapters' check (a
# failing assert fails its chapter and the build, naming the claim), so `make test` does not
# also run nbval (`make notebooks`, for authors who want a pass/fail per cell).
test: lint unit  ## the whole suite: lint, pytest, every chapter executed and built, browser check, docker
	$(if $(CHAPTERS),STAMPEDE_DURATION_S=$${STAMPEDE_DURATION_S:-25} $(MAKE) --no-print-directory html browser)
	$(MAKE) --no-print-directory docker-test

figures: setup  ## run every chapter with papermill; charts to book/figures/<chapter>/
	$(BIN)/python tools/figures.py $(if $(DURATION),--duration $(DURATION)) $(CHAPTERS)

off-defaults: setup  ## papermill chapters away from their defaults (SET="pods=6 rate=200", ONLY, DURATION); not in make test
	$(BIN)/python tools/off_defaults.py $(foreach s,$(SET),--set $(s)) \
	    $(if $(DURATION),--duration $(DURATION)) $(or $(ONLY),$(CHAPTERS))

html: figures  ## build the HTML book from the executed chapters
	$(BIN)/jupyter-book build $(SITE) --toc $(abspath $(SITE))/book/_toc.yml \
	    --config $(SITE)/book/_config.yml --path-output book -W -q

book: html browser  ## THE MAIN JOB: regenerate every figure and build the book
	@echo "book built: book/_build/html/index.html"

lab: setup  ## JupyterLab with the lab running; Ctrl-C stops both (LAB_ARGS: more jupyter lab options)
	@lab="$$($(BIN)/stampede lab up --json)" || exit 1; \
	  trap '$(BIN)/stampede lab down > /dev/null' EXIT; trap 'exit 130' INT TERM; \
	  eval "$$(printf '%s' "$$lab" | $(BIN)/python -c 'import json,sys; s=json.load(sys.stdin); print("export STAMPEDE_POD_URLS=" + ",".join(s["pods"]) + " STAMPEDE_REDIS_URL=" + s["redis"] + " STAMPEDE_LAB_SECRET=" + s["secret"])')"; \
	  root=""; if [ "$$(id -u)" -eq 0 ]; then root="--allow-root"; fi; \
	  $(BIN)/jupyter lab $$root $(LAB_ARGS) chapters/

clean:  ## remove builds, cached runs and lab logs (keeps the virtualenv)
	rm -rf book/_build book/figures data/runs data/lab

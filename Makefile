# Developer entry points. `make help` lists them; `make run` is all a newcomer needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SCRIPTS := bin/run bin/with-database
WITH_DB := $(PY) bin/with-database
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lint format migrate shell till-key clean-db browser bench

help: ## List the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  make %-9s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

install: $(INSTALLED) ## Create .venv and install the project with its dev tools (when needed)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@

run: install ## Start everything at http://127.0.0.1:8000/admin/ (PostgreSQL embedded if no DATABASE_URL)
	$(PY) bin/run

test: lint browser ## Lint, then pytest on PostgreSQL (DATABASE_URL, else 127.0.0.1:5432, else embedded)
	$(WITH_DB) --try-local -- $(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff, ruff format --check, mypy, and no missing migrations
	$(PY) -m ruff check . $(SCRIPTS)
	$(PY) -m ruff format --check . $(SCRIPTS)
	$(PY) -m mypy --scripts-are-modules . $(SCRIPTS)
	$(WITH_DB) --try-local -- $(PY) manage.py makemigrations --check --dry-run \
		--settings coalition.settings.test

APT_CHROMIUM := apt-get install -y --no-install-recommends chromium
browser: ## Install Debian's Chromium for the portal's browser tests (once; root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; \
		elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
		else echo "make browser: install Debian's chromium package as root" >&2; exit 1; fi; \
		echo "make browser: installing Debian's chromium for the browser tests"; \
		$$SUDO $(APT_CHROMIUM) || { $$SUDO apt-get update && $$SUDO $(APT_CHROMIUM); }; }

format: install ## Fix what ruff can, then format
	$(PY) -m ruff check --fix . $(SCRIPTS)
	$(PY) -m ruff format . $(SCRIPTS)

migrate: install ## Apply migrations to the database `make run` uses
	$(WITH_DB) -- $(PY) manage.py migrate

shell: install ## Django shell on the database `make run` uses
	$(WITH_DB) -- $(PY) manage.py shell

till-key: install ## Print a new API key for a till: make till-key TENANT=<slug> [TILL=pos-1]
	@test -n "$(TENANT)" || { echo "usage: make till-key TENANT=<tenant slug> [TILL=<till code>]" >&2; exit 2; }
	@$(WITH_DB) -- $(PY) manage.py issue_till_key --tenant "$(TENANT)" --till "$(or $(TILL),pos-1)"

bench: install ## Run the benchmarks (about 40 min) and rewrite docs/benchmarks.md: make bench [BENCH=close]
	$(PY) bench/run_all.py $(if $(BENCH),--only $(BENCH))

clean-db: install ## Stop the embedded PostgreSQL and delete var/postgres
	$(WITH_DB) --delete-embedded

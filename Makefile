# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
PG_URL  ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
RUN_ENV := IDP_DEMO=true

.PHONY: run test test-sqlite test-postgres install messages openapi bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(BIN)/.installed

install: $(BIN)/.installed

## make run: install, migrate, create the demo client and user, serve on http://127.0.0.1:8000
run: install
	$(RUN_ENV) $(BIN)/idp migrate
	$(RUN_ENV) $(BIN)/idp demo
	$(RUN_ENV) $(BIN)/idp serve

## make test: the whole suite on SQLite, then on PostgreSQL ($(PG_URL))
test: $(BIN)/.installed-test
	PG_URL='$(PG_URL)' scripts/test.sh

test-sqlite: $(BIN)/.installed-test
	$(BIN)/pytest -q

test-postgres: $(BIN)/.installed-test
	IDP_TEST_DATABASE_URL='$(PG_URL)' $(BIN)/pytest -q --ignore=tests/browser

messages:
	scripts/extract-messages.sh

## make openapi: regenerate openapi/openapi.json from the code (a test fails while it is stale)
openapi: install
	$(BIN)/python scripts/openapi.py

## make bench: issue 6's benchmark table, each figure next to a same-run baseline; see bench/README.md
## (IDP_BENCH_ONLY=refresh,logins reruns rows; IDP_BENCH_DATABASE_URL benches on a scratch PostgreSQL)
bench: install
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install -y wrk" >&2; exit 1; }
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) idp.db idp.db-* .pytest_cache

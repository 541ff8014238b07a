# The few commands people type. Each creates the virtualenv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-unit bench lint migrate clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

## run: the whole system (embedded PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset)
run: $(STAMP)
	$(PY) -m shared.runtime.supervisor

## test: the whole suite (tests/unit and tests/integration) against real PostgreSQL, Redis and Celery workers
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## test-unit: tests/unit only, in seconds, with no server. The closed port (1)
## in TEST_DATABASE_URL/TEST_REDIS_URL proves it on every run: had anything
## tried to start or claim PostgreSQL or Redis, the run would fail.
test-unit: $(STAMP)
	TEST_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none TEST_REDIS_URL=redis://127.0.0.1:1/0 \
		$(PY) -m pytest tests/unit $(PYTEST_ARGS)

## bench: throughput/latency figures as ratios against same-run baselines
bench: $(STAMP)
	$(PY) -m bench

## lint: ruff, mypy, and the import contracts (pyproject.toml [tool.importlinter])
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

migrate: $(STAMP)
	$(PY) -m shared.runtime.migrate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

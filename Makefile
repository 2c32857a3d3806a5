# The two set-up commands: `make demo` (run the pipeline on a generated shop and serve it) and
# `make test` (the whole test suite; `make test-fast` leaves the slow tests out). All create or
# update .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint audit clean browser jdbc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/recsys demo --config configs/demo.toml

# Browser tests drive Debian's Chromium (never `playwright install`): installed here when root.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "note: /usr/bin/chromium is missing (sudo apt-get install chromium); browser tests will skip"; \
	fi

# The Spark engine's JDBC test reads PostgreSQL with Debian's JDBC driver: installed here when root.
jdbc:
	@if [ -f /usr/share/java/postgresql.jar ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpostgresql-jdbc-java; \
	else \
		echo "note: /usr/share/java/postgresql.jar is missing (sudo apt-get install libpostgresql-jdbc-java); the Spark JDBC test will skip"; \
	fi

test: $(VENV)/.installed-test browser jdbc lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory audit

# The inner loop: ruff and every test not marked slow (SLOW_MODULES, SLOW_TESTS and the slow
# fixtures in tests/conftest.py).
test-fast: $(VENV)/.installed-test
	$(BIN)/ruff check recsys jobs tests benchmarks
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check recsys jobs tests benchmarks
	$(BIN)/mypy recsys tests

# Known vulnerabilities with a fix in the installed packages fail; see tests/dependency_audit.py
audit: $(VENV)/.installed-test
	$(BIN)/python -m tests.dependency_audit

clean:
	rm -rf var test-artifacts .pytest_cache .hypothesis

# lakebert: `make demo` runs the pipeline on the bundled sample, `make check` is the fast inner loop
# (lint, import contracts, unit tests: a few minutes), `make test` runs lint and every test.
# Both install first (into .venv) when pyproject.toml changed or nothing is installed yet;
# the install is one line on the console, pip's own output goes to .venv/install.log.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= data/sample

# Spark's Python workers must run the venv's interpreter, not the system python.
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: install demo lint check test bench clean-demo check-prereqs

install: $(STAMP)

check-prereqs:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "lakebert needs Python >= 3.10, found " + sys.version.split()[0]'
	@command -v java >/dev/null || { echo "lakebert needs Java 17+ on PATH (Spark runs on the JVM)"; exit 1; }

$(STAMP): pyproject.toml | check-prereqs
	@echo "lakebert: installing into $(VENV) (pip's output: $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install --quiet -e ".[dev,airflow]" >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@# Start Spark once so Ivy fetches Delta's jars from Maven Central into ~/.ivy2.5.2 now.
	@$(PY) -m spark_jobs.session > $(VENV)/spark-init.log 2>&1 || { cat $(VENV)/spark-init.log; exit 1; }
	@touch $(STAMP)

demo: install
	$(VENV)/bin/lakebert sample-data --out $(DEMO_DATA)
	$(VENV)/bin/lakebert run --set ingest.source=$(DEMO_DATA) --set ingest.id_column=id

# ruff's lint and the import contracts of docs/architecture.md (pyproject.toml's
# [tool.importlinter]: packages import only downward, no Spark below spark_jobs, no cycles).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The inner loop: lint, then every test that starts no real component (`-m "not integration"`).
check: lint
	$(PY) -m pytest tests -m "not integration" -q

test: lint
	$(PY) -m pytest tests

bench: install
	$(PY) bench/etl.py
	$(PY) bench/tokenization_speed.py
	$(PY) bench/tokenize_cold.py
	$(PY) bench/train_cpu.py
	$(PY) bench/loader_bytes.py

clean-demo:
	rm -rf lakehouse data spark-warehouse

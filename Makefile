# foodrisk: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
BENCH_ARGS ?=
SOAK_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-import bench-soak drills reference system-deps venv clean help

help:
	@echo "make run [DURATION=60]   the main job on the embedded broker + chdb (Ctrl-C ends it)"
	@echo "make test                set up everything the tests need and run them"
	@echo "make lint                ruff + mypy + lint-imports (the floors)"
	@echo "make bench               benchmarks (figures and ratios against baselines)"
	@echo "make bench-import        foodrisk import of a generated 1M-row CSV (ROWS=n to change)"
	@echo "make bench-soak          the national soak: 30 days on a national key space, engine then Kafka (SOAK_ARGS)"
	@echo "make drills              reliability drills (crash, outage, hostile input) with a table of figures"
	@echo "make reference           rebuild the shipped limit files from schemas/reference/sources/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP) system-deps
	$(BIN)/foodrisk run $(if $(DURATION),--duration $(DURATION),)

# Java and Maven for the embedded broker (Apache Kafka, its jars fetched from Maven Central on first
# use), kcat for the outside-client contract test, and Debian's clickhouse-server, Alertmanager and
# Prometheus (with promtool) for the integration tests, Debian's chromium (with a CJK font for
# its screenshots) for the published pages' browser test (tests/integration/test_publish.py), and
# Debian's ZooKeeper for the ClickHouse cluster drill (no binary on PATH: its jar is looked for).
# Installed only when running as root on Debian and one of their binaries is missing; otherwise
# this says what is absent in one line.
SYSTEM_BINARIES := java mvn kcat clickhouse-server clickhouse-client prometheus-alertmanager prometheus promtool chromium
SYSTEM_PACKAGES := openjdk-17-jre-headless maven kcat clickhouse-server clickhouse-client prometheus-alertmanager prometheus \
	chromium fonts-wqy-microhei zookeeper
ZOOKEEPER_JAR := /usr/share/java/zookeeper.jar
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	test -f $(ZOOKEEPER_JAR) || missing="$$missing zookeeper"; \
	if [ -z "$$missing" ]; then \
		echo "system packages present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "missing:$$missing; installing Debian packages: $(SYSTEM_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			$(SYSTEM_PACKAGES) >/dev/null; \
	else \
		echo "missing:$$missing; not root on Debian: install them yourself ($(SYSTEM_PACKAGES))"; \
	fi

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy pipeline schemas sinks agents tests
	$(BIN)/lint-imports

drills: $(STAMP) system-deps
	$(BIN)/python -m tests.drills

bench: $(STAMP) system-deps
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# foodrisk import of a generated 1,000,000-row CSV: rows/s, peak RSS, every row accounted for
bench-import: $(STAMP) system-deps
	$(BIN)/python -m tests.bench.bench_import $(ROWS)

# The national soak (issue 21, README "Performance"): 30 simulated days of a synthetic national key
# space through the early-warning engine in process (phase A), then through one worker on the local
# Apache Kafka with a kill -9 and a rebuild at the end (phase B). SOAK_ARGS="--phase a --days 5" etc.
bench-soak: $(STAMP) system-deps
	$(BIN)/python -m tests.bench.bench_soak $(SOAK_ARGS)

# The shipped pesticide_mrls.csv and contaminant_limits.csv are built from the standards' tables in
# schemas/reference/sources/ (a unit test checks the committed files equal a fresh build).
# Any unknown food path or analyte fails the build (listed on stderr); nothing is dropped silently.
reference: $(STAMP)
	$(BIN)/foodrisk reference build

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

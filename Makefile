# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The report page's browser test drives Debian's chromium through its
# chromedriver, and the page's DAG is laid out by graphviz's dot where it is
# installed: both are installed here when absent (CI runs as root). Without
# them the browser test fails and says how to install them.
SYSTEM_PACKAGES := chromium chromium-driver graphviz
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q

system-packages:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		&& command -v dot >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing $(SYSTEM_PACKAGES) (apt-get)"; \
		$(APT_INSTALL) $(SYSTEM_PACKAGES) >/dev/null \
		|| { apt-get update -q >/dev/null && $(APT_INSTALL) $(SYSTEM_PACKAGES) >/dev/null; } \
		|| echo "warning: could not install $(SYSTEM_PACKAGES); the browser test will fail"; \
	else \
		echo "warning: install $(SYSTEM_PACKAGES) (as root: apt-get install -y $(SYSTEM_PACKAGES))"; \
	fi

demo: $(STAMP)
	$(BIN)/python examples/smoothie.py
	$(BIN)/python examples/durable.py

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

# The long profile of every property test (40x the examples, random draws).
soak: $(STAMP)
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -p no:cacheprovider --timeout=3600 \
		tests/test_invariants.py tests/test_scheduler_order.py tests/test_scheduler_failures.py \
		tests/test_scheduler_job.py tests/test_scheduler_offers.py tests/test_scheduler_machine.py \
		tests/test_graph.py \
		tests/test_validation.py tests/test_tasks.py

bench: $(BENCH_STAMP) system-packages
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check daguerreo_actors tests examples bench
	$(BIN)/ruff format --check daguerreo_actors tests examples bench
	$(BIN)/mypy daguerreo_actors

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info

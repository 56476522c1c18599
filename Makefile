# Benchmarks print figures and write JSON under bench/results/; they are never part of the tests.
PY ?= .venv/bin/python

.PHONY: test bench bench-quick
test:
	$(PY) -m pytest
bench:
	$(PY) bench/generation.py
	$(PY) bench/floor.py --variants --torch-compile
	$(PY) bench/memory.py
bench-quick:
	$(PY) bench/generation.py --quick --steps 2 --out bench/results/generation_quick.json

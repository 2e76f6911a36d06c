"""Load benchmark of the task API: `make bench` (see bench/run.py and docs/performance.md)."""

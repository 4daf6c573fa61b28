"""Benchmarks that compare fleethub with its peers in one run; see `python -m bench --help`."""

"""The parts of ``bench/bench_ingest.py``: common (constants), procs (measured child
processes), services (sandbox, PostgreSQL), runs (one measured ingest), scenarios, report."""

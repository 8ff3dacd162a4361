"""numpywren benchmarks: run with ``python -m benchmarks.NAME`` or ``numpywren bench NAME`` (see README.md)."""

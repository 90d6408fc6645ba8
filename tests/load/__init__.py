"""Open-loop load test of the big-event flow (``make load``, ``tests/load/run.py``)."""

"""Where a run's time goes: named sections summed per run, for scripts/bench.py.

    with timing.section("curve"):
        ...

Costs a perf_counter pair per section. When $GDFIT_TIMINGS names a file, each run appends one
JSON line to it (section -> seconds, plus the run's id); otherwise nothing is written.
"""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "GDFIT_TIMINGS"
totals: dict[str, float] = {}  # this run's sections so far


@contextmanager
def section(name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - began)


def add(name: str, seconds: float) -> None:
    totals[name] = totals.get(name, 0.0) + seconds


def report(**about) -> None:
    """Append this run's sections to $GDFIT_TIMINGS (if set) and start the next run's."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({**about, **totals}) + "\n")
    totals.clear()

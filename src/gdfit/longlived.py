"""Keeping what lives as long as a command's process out of the garbage collector's way.

Importing MLflow, SQLAlchemy, pandas and matplotlib and opening a store leave ~10^6 objects
that stay until the process ends. Python's full collections walk all of them (~0.2 s each;
several happen in a run, more in a sweep, whose jobs' configs and results Hydra keeps to its
end). `freeze()` moves what exists into the collector's permanent generation, never walked.

Only in gdfit-train's own process (`own_process()`): in a notebook, the objects are its user's.
"""

import gc

_owned = False
_done: set[str] = set()


def own_process() -> None:
    """This process is a command's own: its long-lived objects may be frozen. Until the first
    `freeze`, nothing is collected: what the imports and the store's creation build is nearly
    all kept, and walking it again and again cost ~1 s of a run's start."""
    global _owned
    _owned = True
    gc.disable()


def freeze(moment: str) -> None:
    """Freeze what exists now (and collect from here on), once per `moment` of the process
    ("sweep start": MLflow and the store are in; "first run": matplotlib and the first run's
    store too)."""
    if _owned and moment not in _done:
        _done.add(moment)
        gc.freeze()
        gc.enable()

"""A run's loss curve as it goes: every step kept for loss.npz, and the `loss` metric at chart
resolution sent to the store in batches (gdfit.runlog writes the rest of the run).
"""

import sys
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric

from gdfit.client import Client, ServerAway
from gdfit.errors import TrackingError

FLUSH_SECONDS = 2.0  # how often buffered loss points are sent while a run goes
FULL_CURVE_MAX = 10_000_000  # points of loss.npz (float64: 80 MB); longer runs thin evenly
CURVE_FILE = "loss.npz"  # arrays `steps` (int64), `losses` (float64), and the fit's snapshots


def thinned_steps(steps: int, most: int) -> np.ndarray:
    """At most `most` (>= 2) evenly spaced steps of 0 .. steps-1, the first and last included:
    step i*(steps-1)//(most-1), in integers so that no step is lost to rounding."""
    if steps <= most:
        return np.arange(steps, dtype=np.int64)
    q, r = divmod(steps - 1, most - 1)
    i = np.arange(most, dtype=np.int64)
    return i * q + (i * r) // (most - 1)


class CurveLogger:
    """The loss curve of a run, kept two ways.

    - every step (up to FULL_CURVE_MAX, beyond that thinned evenly) in memory as float64, which
      the run stores as one artifact, loss.npz, at its end: what gdfit's readers use; with it
      the parameters at a few steps (`snapshots`), from which the fit's images can be drawn;
    - the `loss` metric at chart resolution: at most `max_points` evenly spaced steps including
      the first and the last, sent in batches while the run goes. MLflow's UI samples a metric
      to ~320 points for its charts anyway, and each point costs the sqlite store ~0.1 ms.
    """

    def __init__(self, client: Client, run_id: str, steps: int, max_points: int):
        self.client, self.run_id = client, run_id
        self.chart = thinned_steps(steps, max_points)  # (<= max_points,) the metric's steps
        # None: every step is kept; else the steps kept, in order
        self.kept = thinned_steps(steps, FULL_CURVE_MAX) if steps > FULL_CURVE_MAX else None
        self.losses = np.empty(min(steps, FULL_CURVE_MAX))  # untouched pages cost nothing
        self.count = 0  # entries of self.losses filled so far
        self.snapshots: dict[int, np.ndarray] = {}  # step -> parameters after that many updates
        self.pending: list[Metric] = []
        self.last_flush = time.monotonic()
        self.refused = False  # the store refused points while the run went (said once)

    def add(self, start: int, losses: np.ndarray) -> None:
        """The losses of steps start .. start+len(losses)-1 (a chunk; cut short on divergence)."""
        end = start + len(losses)
        if self.kept is None:
            self.losses[start:end] = losses
            self.count = end
        else:
            lo, hi = np.searchsorted(self.kept, (start, end))
            self.losses[lo:hi] = np.asarray(losses)[self.kept[lo:hi] - start]
            self.count = int(hi)
        lo, hi = np.searchsorted(self.chart, (start, end))
        now = int(time.time() * 1000)
        for step in self.chart[lo:hi].tolist():
            self.pending.append(Metric("loss", float(losses[step - start]), now, step))
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush(wait=False)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, losses) of every step so far (thinned evenly past FULL_CURVE_MAX)."""
        steps = np.arange(self.count) if self.kept is None else self.kept[: self.count]
        return steps, self.losses[: self.count]

    def write(self, folder: Path) -> None:
        steps, losses = self.curve()
        marks = sorted(self.snapshots)
        snapshots = np.array([self.snapshots[s] for s in marks]) if marks else np.empty((0, 0))
        np.savez(
            folder / CURVE_FILE,
            steps=steps,
            losses=losses,
            snapshot_steps=np.array(marks, dtype=np.int64),
            snapshots=snapshots,  # (len(snapshot_steps), n_params)
        )

    def flush(self, wait: bool = True) -> None:
        """Send the pending points; with wait=False a store that cannot take them (a server
        away, a full disk) keeps them pending and training goes on: the run's end tries again
        and keeps on disk what it still cannot send (gdfit.outbox)."""
        if self.pending:
            try:
                self.client.log_batch(
                    self.run_id, metrics=self.pending, synchronous=True, wait=wait
                )
            except ServerAway:
                return
            except TrackingError as error:
                if wait:
                    raise
                if not self.refused:  # a server away has said so already (client.Client)
                    print(
                        f"gdfit: warning: {error}; keeping the loss points and going on",
                        file=sys.stderr,
                        flush=True,
                    )
                self.refused = True
                self.last_flush = time.monotonic()
                return
            self.pending = []
        self.last_flush = time.monotonic()

"""Writing one run to MLflow: its params, its loss curve as it goes (gdfit.curve), its files
and its end.

A run is opened with `tracked_run(...)`, a context manager that ends the MLflow run FINISHED,
FAILED or KILLED however the block exits, after sending what it still holds. What the store
cannot take at the end is kept on disk (gdfit.outbox); `TrackedRun.close` then returns a
`KeptEnd` saying where, for the caller to raise or to add to the error that ended the run.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from gdfit import liveness, outbox, views
from gdfit.client import Client
from gdfit.curve import CurveLogger
from gdfit.errors import STOPPING, TrackingError
from gdfit.redaction import public_uri, redact, redact_data
from gdfit.store import open_experiment, reap_lost, resolve_uri, source_tags

PARENT_ENV = "GDFIT_SWEEP_PARENT"  # in a sweep's job: the id of its parent run
NAME_ENV = "GDFIT_SWEEP_NAME"  # and the parent's name, which groups the jobs in the UI
JOBS_ENV = "GDFIT_SWEEP_JOBS"  # and how many jobs the sweep has, when it is known
FIGURES_LEFT = "left for the sweep's end"  # tag gdfit.figures of a job that did not draw
DIVERGED_TAG = "gdfit.diverged_at_step"  # on a run whose loss diverged: the step (see readback)


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """Every leaf of the resolved config under its dotted key, as MLflow param strings."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = json.dumps(node) if isinstance(node, list | None) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def run_params(cfg: DictConfig, uri: str, run_name: str) -> list[Param]:
    """The params of a run: its config, with what it actually used where the config says
    "the default" (null)."""
    used = {"tracking.uri": public_uri(uri), "tracking.run_name": run_name}
    return [Param(k, v) for k, v in (flat_params(cfg) | used).items()]


@dataclass
class KeptEnd:
    """The end of a run that the store could not take, kept on disk (or not even that)."""

    error: TrackingError  # what to raise when nothing else ended the run
    where: str  # the note for an error that had already ended it


@dataclass
class TrackedRun:
    """One open MLflow run: what `train` logs, by name.

    Files are written into a staging folder and sent in one upload per `send_files` (the
    run's end sends the rest); metrics and tags wait for the run's end, sent with its last loss
    points in one write.
    """

    client: Client
    run_id: str
    run_name: str
    experiment_id: str
    curve: CurveLogger
    metrics: list[Metric] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    params: list[Param] = field(default_factory=list)  # sent with the end (a batched child's)

    def __post_init__(self) -> None:
        self._staging = tempfile.TemporaryDirectory(prefix="gdfit-run-")
        self.staged = Path(self._staging.name)

    def log_metrics(self, metrics: dict[str, float], model_id: str | None = None) -> None:
        """At step 0, linked to the run's logged model `model_id` when it has one."""
        now = int(time.time() * 1000)
        self.metrics += [Metric(k, float(v), now, 0, model_id=model_id) for k, v in metrics.items()]

    def log_text(self, text: str, name: str) -> None:
        """Redacted as Client.log_text redacts what it sends (see gdfit.redaction)."""
        (self.staged / name).write_text(redact(text), encoding="utf-8")

    def log_dict(self, data: dict, name: str) -> None:
        (self.staged / name).write_text(json.dumps(redact_data(data), indent=2), encoding="utf-8")

    def log_figure(self, figure: Any, name: str) -> None:
        """A matplotlib figure as the file `name` (fit.png)."""
        figure.savefig(self.staged / name)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_images(self, frames: list[tuple[int, np.ndarray]], key: str) -> None:
        """(step, RGB uint8 image) pairs as one MLflow image series, which the UI's image cards
        step through. The files are those `MlflowClient.log_image(key=, step=)` writes (a PNG
        and a WebP per step, named so the UI finds key and step; the WebP at full size), sent with
        the run's other files and one tag instead of two uploads and a tag per image."""
        log_images(self.staged, frames, key)
        self.set_tags({"mlflow.loggedImages": "True"})

    def send_files(self, must: bool = True) -> None:
        """Upload what is staged, in one go, and start a new staging folder. With must=False a
        store that cannot take the files (full, read-only, away) is said once and the files
        stay staged: the run goes on, and its end sends them or keeps them on disk."""
        if any(self.staged.iterdir()):
            try:
                self.client.log_artifacts(self.run_id, str(self.staged))
            except TrackingError as error:
                if must:
                    raise
                print(
                    f"gdfit: warning: {error}; keeping the run's files until its end",
                    file=sys.stderr,
                    flush=True,
                )
                return
        self._staging.cleanup()
        self._staging = tempfile.TemporaryDirectory(prefix="gdfit-run-")
        self.staged = Path(self._staging.name)

    def close(self, status: str) -> KeptEnd | None:
        """End the run `status` after sending the rest of its curve, loss.npz and every staged
        file; what the store cannot take is kept on disk, and said in the KeptEnd returned."""
        metrics, self.curve.pending = self.curve.pending + self.metrics, []
        tags = dict(self.tags)
        try:
            failure = None
            try:
                self.curve.write(self.staged)
            except OSError as error:  # no room where files are staged: kept, written there
                failure = TrackingError(f"cannot stage the run's loss.npz: {error.strerror}")
            try:
                self.send_files()
            except TrackingError as error:
                failure = failure or error
            try:
                batch = [RunTag(k, v) for k, v in tags.items()]
                self.client.log_batch(
                    self.run_id, metrics=metrics, params=self.params, tags=batch, synchronous=True
                )
                metrics, tags, self.params = [], {}, []
            except TrackingError as error:
                failure = failure or error
            if failure is None:  # else its status would claim data it does not have
                try:
                    self.client.set_terminated(self.run_id, status)
                    return None
                except TrackingError as error:
                    failure = error
            return self._keep(status, failure, metrics, tags)
        finally:
            self._staging.cleanup()

    def _keep(
        self, status: str, failure: TrackingError, metrics: list, tags: dict[str, str]
    ) -> KeptEnd:
        """Keep on disk what `failure` kept from the store. A store that still answers is
        told: the run ends FAILED, tagged where its end is, until sent."""
        answers = self.client.away_since is None
        marks = {}
        if answers:
            marks["gdfit.unsent"] = ""  # the folder, once it exists
            if "gdfit.error" not in self.tags:
                marks["gdfit.error"] = f"the end of the run could not be stored ({failure})"
        try:
            folder = outbox.keep(
                self.client.uri,
                self.run_id,
                self.run_name,
                status,
                str(failure),
                metrics,
                tags,
                self.staged,
                marks=list(marks),
                curve=self.curve,
            )
        except TrackingError as lost:
            said = TrackingError(f"{failure}; {lost}")  # nothing kept: the run ends FAILED
            kept = KeptEnd(said, str(said))
        else:
            where = (
                f"run {self.run_id}'s end is kept in {folder} "
                f"({outbox.summary_of(folder, outbox.read(folder))}); send it with "
                f"`gdfit-send {folder}` once the store can take it"
            )
            kept = KeptEnd(TrackingError(f"{failure}: {where}"), where)
            marks["gdfit.unsent"] = str(folder)
            if "gdfit.error" in marks:
                marks["gdfit.error"] += f"; kept in {folder}"
        if answers:
            try:
                marked = [RunTag(k, v[:5000]) for k, v in marks.items() if v]
                self.client.log_batch(self.run_id, tags=marked, synchronous=True)
                self.client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass  # the store that refused the rest: the next command reaps the run
        return kept


def log_images(folder: Path, frames: list[tuple[int, np.ndarray]], key: str) -> None:
    """Write `frames` into `folder/images/` as MLflow's image series files (see log_images)."""
    import uuid

    from PIL import Image

    now = int(time.time() * 1000)
    (folder / "images").mkdir(exist_ok=True)
    for step, pixels in frames:
        name = folder / "images" / f"{key}+step+{step}+timestamp+{now}+{uuid.uuid4()}"
        image = Image.fromarray(pixels)
        image.save(f"{name}.png")
        # The cards show the WebP. MLflow's log_image shrinks it to 256 pixels, where a frame's
        # text blurs; gdfit's frames are small already, so it keeps their size (lossless:
        # flat colours, smaller than lossy and sharp).
        image.save(f"{name}+compressed.webp", lossless=True, method=0)  # WebP's fastest


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and the stopping signals while a run is being created or closed: a
    signal must not leave it RUNNING, or without its params. The first one held acts when the
    block ends, as its handler would have acted on arrival.

    Held in Python, not by the thread's signal mask: the kernel gives a process's signal to any
    thread that does not block it (MLflow's telemetry thread, say), and Python then runs the
    handler in the main thread all the same. Only the main thread runs handlers, so a block in
    another thread has nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before: dict[int, Any] = {}
    for stopping in (signal.SIGINT, *STOPPING):
        handler = signal.getsignal(stopping)
        if handler is not None and handler != signal.SIG_IGN:  # else not Python's to hold
            before[stopping] = signal.signal(stopping, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for held_back, handler in before.items():
            signal.signal(held_back, handler)
        if held:
            first = before[held[0]]
            if callable(first):
                first(held[0], None)
            else:  # SIG_DFL: the signal's own action, now
                os.kill(os.getpid(), held[0])


def run_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` with MLflow's source tags, the sweep's parent and group, and this process."""
    tags = {**source_tags(), **tags}
    if parent := os.environ.get(PARENT_ENV):
        tags[MLFLOW_PARENT_RUN_ID] = parent
    tags |= views.group_tag(os.environ.get(NAME_ENV) if parent else None)
    tags[liveness.PROCESS_TAG] = liveness.identity()
    return tags


def written_run(
    client: Client,
    experiment_id: str,
    cfg: DictConfig,
    run_name: str,
    tags: dict[str, str],
    chart_points: int,
) -> TrackedRun:
    """A run written in one go once its fit is over (a batched sweep's child): created with
    its tags; its params, metrics and curve go with its end (`TrackedRun.close`), so that the
    whole run costs the store four calls. Create and close it inside `signals_deferred`."""
    created = client.create_run(experiment_id, run_name=run_name, tags=run_tags(tags))
    run_id = created.info.run_id
    curve = CurveLogger(client, run_id, cfg.train.steps, chart_points)
    params = run_params(cfg, client.uri, run_name)
    return TrackedRun(client, run_id, run_name, experiment_id, curve, params=params)


@contextmanager
def tracked_run(
    cfg: DictConfig,
    run_name: str,
    tags: dict[str, str],
    opened: Callable[[str], None] = lambda run_id: None,
) -> Iterator[TrackedRun]:
    """Start a run in `tracking.experiment` with the config's params and `tags`; always end it.

    An exception ends the run FAILED with the error as tag `gdfit.error`; Ctrl-C ends it KILLED.
    `opened(run_id)` is told the run's id as soon as it exists. The client, not MLflow's fluent
    API: no process-global active run to leak between jobs that share a worker. In a sweep the
    run nests under the sweep's parent run through MLflow's own parent tag.
    """
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    tags = run_tags(tags)
    reap_lost(client, experiment_id, once=True)
    status, ended_by = "FAILED", None  # type: str, BaseException | None
    run: TrackedRun | None = None
    try:
        # Created with its params while signals wait, inside the guard: a Ctrl-C held back
        # meanwhile arrives at the end of this block, where the run exists and is ended KILLED.
        with signals_deferred():
            created = client.create_run(experiment_id, run_name=run_name, tags=tags)
            run_id = created.info.run_id
            curve = CurveLogger(client, run_id, cfg.train.steps, cfg.tracking.curve_points)
            run = TrackedRun(client, run_id, run_name, experiment_id, curve)
            opened(run_id)
            client.log_batch(run_id, params=run_params(cfg, uri, run_name), synchronous=True)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt as error:
        status, ended_by = "KILLED", error
        if run is not None:
            error.add_note(f"run {run.run_id} ended KILLED with its loss curve so far")
        raise
    except Exception as error:
        status, ended_by = "FAILED", error
        if run is not None:
            run.set_tags({"gdfit.error": f"{type(error).__name__}: {error}"[:5000]})
            error.add_note(f"run {run.run_id} ended FAILED")
        raise
    finally:
        if run is not None:  # else the store did not create it: nothing to end
            _end(run, status, ended_by)


def _end(run: TrackedRun, status: str, ended_by: BaseException | None) -> None:
    """Close `run` with `status`; what the store could not take is said on the error that
    ended the run, or raised."""
    kept = None
    try:
        with signals_deferred():  # a signal waits until the run is closed, then stops it
            kept = run.close(status)
    except KeyboardInterrupt as stop:  # that signal: it still says where the end is
        if kept is not None:
            stop.add_note(kept.where)
        raise
    if kept is not None and ended_by is not None:
        ended_by.add_note(kept.where)  # the error that ended the run comes first
    elif kept is not None:
        raise kept.error

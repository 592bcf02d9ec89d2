"""Everything gdfit writes to MLflow, or reads back from it, goes through this module.

A run is opened with `tracked_run(...)`, a context manager that ends the MLflow run FINISHED,
FAILED or KILLED however the block exits, after flushing the loss points it still holds.
Every client comes from `client.connect`: bounded HTTP waits, credentials redacted from all
that is recorded, one-line errors, and a server that goes away mid-run waited for.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import (
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)
from omegaconf import DictConfig, OmegaConf

from gdfit import liveness, timing, views
from gdfit.cli import signals_deferred
from gdfit.client import Client, ServerAway, connect, is_outage, reading, store_error
from gdfit.errors import ConfigError, GdfitError, TrackingError
from gdfit.multirun import NAME_ENV as SWEEP_NAME_ENV  # and its name, which groups them in the UI
from gdfit.multirun import PARENT_ENV as SWEEP_PARENT_ENV  # set in a sweep's jobs: their parent
from gdfit.notes import NOTE_TAG, shown_uri
from gdfit.paths import default_store_dir
from gdfit.redaction import redact, redact_data

FLUSH_SECONDS = 2.0  # how often buffered loss points are sent while a run goes


def resolve_uri(uri: str | None, source: str = "tracking.uri") -> str:
    """`uri` if set, else $MLFLOW_TRACKING_URI, else sqlite in the project's mlruns/; checked,
    with a relative sqlite path made absolute. `source` names the setting in errors."""
    if not uri:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI"
    if not uri:
        return f"sqlite:///{default_store_dir() / 'mlflow.db'}"
    return checked_uri(uri, source)


STORE_FORMS = "sqlite:///PATH/mlflow.db, http(s)://HOST:PORT or postgresql://..."


def checked_uri(uri: str, source: str) -> str:
    """A store gdfit can write whole runs to, or a ConfigError saying what is wrong."""
    from urllib.parse import urlsplit

    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    kind = scheme.split("+")[0]

    def refuse(why: str):
        raise ConfigError(source, f"{why}; use {STORE_FORMS}", shown_uri(uri))

    if kind == "sqlite":
        rest = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
        if rest is None or rest in ("", ":memory:"):
            refuse("an in-memory sqlite store vanishes when the command ends")
        path = Path(rest)
        if not path.is_absolute():  # the relative form MLflow itself prints
            path = Path.cwd() / path
        if path.is_dir():
            refuse(f"{path} is a folder, not a database file")
        return f"sqlite:///{path}"
    if kind in ("http", "https"):
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            host = None
        if not host:
            refuse("the address names no host")
        return uri
    if kind in ("postgresql", "postgres", "mysql", "mssql"):
        return uri
    if kind == "file" or not scheme or len(scheme) == 1:  # a path (or a Windows drive)
        refuse("a folder or file:// store is MLflow's old file store, which 3.13+ refuses")
    refuse(f"{scheme}: is not a tracking store gdfit can use")


def sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


# (uri, experiment, the sqlite file's (device, inode) or None) -> what open_experiment returned
_experiments: dict[tuple, tuple[Client, str]] = {}


def open_experiment(uri: str, name: str) -> tuple[Client, str]:
    """A client on `uri` and the id of experiment `name`, creating store and experiment once.

    A new sqlite store is created by migrations that race when several processes start at
    once, so creation happens under a file lock beside the database; artifacts of a sqlite
    store live next to it, under `artifacts/<experiment>`. Any failure is a TrackingError
    naming the URI.
    """
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ConfigError("tracking.experiment", "must be at most 200 printable characters", name)
    # The jobs of a sweep on the basic launcher share this process: the first opens the store
    # and finds the experiment, the rest reuse both (~0.1 s a job). A sqlite file replaced
    # since (a new store at the same path) has another inode, so it is opened anew.
    db = sqlite_path(uri)
    if (uri, name, db and _identity(db)) in _experiments:
        return _experiments[(uri, name, db and _identity(db))]
    try:
        found = _open_experiment(uri, name)
        identity = db and _identity(db)  # the file may have been created just now
        if identity or not db:
            _experiments[(uri, name, identity)] = found
        return found
    except GdfitError:
        raise
    except Exception as error:
        raise store_error(uri, error) from error


def _identity(db: Path) -> tuple[int, int] | None:
    try:
        info = db.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _open_experiment(uri: str, name: str) -> tuple[Client, str]:
    db = sqlite_path(uri)
    if db is None:
        client = connect(uri)
        return client, _get_or_create(client, name, artifact_location=None)
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        if not db.exists() or db.stat().st_size == 0:
            _create_sqlite_store(db)
        try:
            client = connect(uri)
            location = (db.parent / "artifacts" / artifact_folder(name)).as_uri()
            return client, _get_or_create(client, name, artifact_location=location)
        except Exception as error:
            text = str(error).lower()
            schema = ("duplicate column", "already exists", "no such table", "no such column")
            if any(s in text for s in schema):
                raise TrackingError(
                    f"the store {db} is half-built (its creation was cut off, or another tool "
                    f"wrote it): move it aside (mv {db} {db}.broken) and gdfit creates a new one"
                ) from error
            raise


def _create_sqlite_store(db: Path) -> None:
    """Build MLflow's tables in a file beside `db` and move it into place, so that a store
    appears whole or not at all however its creation is cut off (Ctrl-C, SIGKILL, a full
    disk). The caller holds the store's lock."""
    for leftover in db.parent.glob(f".{db.name}.creating-*"):
        leftover.unlink(missing_ok=True)
    building = db.with_name(f".{db.name}.creating-{os.getpid()}")
    connect(f"sqlite:///{building}").search_experiments(max_results=1)  # runs migrations
    os.replace(building, db)


def artifact_folder(experiment: str) -> str:
    """The folder under the store's artifacts/ for `experiment`: its name when that is a plain
    file name, else a safe slug plus a hash, so that no name (`../x`, `/tmp/x`) leads outside."""
    import hashlib

    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}", experiment) and ".." not in experiment:
        return experiment
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._")[:60] or "experiment"
    return f"{slug}-{hashlib.sha256(experiment.encode()).hexdigest()[:10]}"


def _get_or_create(client: Client, name: str, artifact_location: str | None) -> str:
    """The experiment's id; it carries gdfit's view of its runs in the MLflow UI."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        views.ensure(client, experiment)
        return experiment.experiment_id
    tags = views.wanted_tags({})
    return client.create_experiment(name, artifact_location=artifact_location, tags=tags)


def source_tags() -> dict[str, str]:
    """MLflow's own source tags, as its fluent API would set them."""
    return {MLFLOW_SOURCE_NAME: sys.argv[0], MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: _user()}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


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


FULL_CURVE_MAX = 10_000_000  # points of loss.npz (float64: 80 MB); longer runs thin evenly
CURVE_FILE = "loss.npz"  # the whole curve: arrays `steps` (int64) and `losses` (float64)


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
      the run stores as one artifact, loss.npz, at its end: what gdfit's readers use;
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
        self.pending: list[Metric] = []
        self.last_flush = time.monotonic()
        self.refused = False  # the store refused points while the run went (said once)

    def add(self, start: int, losses) -> None:
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
        np.savez(folder / CURVE_FILE, steps=steps, losses=losses)

    def flush(self, wait: bool = True) -> None:
        """Send the pending points; with wait=False a store that cannot take them (a server
        away, a full disk) keeps them pending and training goes on: the run's end tries again
        and keeps on disk what it still cannot send (gdfit.unsent)."""
        if self.pending:
            try:
                with timing.section("curve"):
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


class TrackedRun:
    """One open MLflow run: what `train` logs, by name.

    Files are written into a staging folder and sent in one upload per `send_files` (the
    run's end sends the rest): each separate upload costs a temporary folder, a copy and, on
    a server, a request.
    """

    def __init__(self, client: Client, run_id: str, steps: int, max_points: int):
        self.client, self.run_id = client, run_id
        self.curve = CurveLogger(client, run_id, steps, max_points)
        self.metrics: list[Metric] = []  # to send with the last loss points
        self.tags: dict[str, str] = {}
        self._staging = tempfile.TemporaryDirectory(prefix="gdfit-run-")
        self.staged = Path(self._staging.name)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Sent at the run's end with its last loss points and tags: one write, not three."""
        now = int(time.time() * 1000)
        self.metrics += [Metric(k, float(v), now, 0) for k, v in metrics.items()]

    def log_text(self, text: str, name: str) -> None:
        """Redacted as Client.log_text redacts what it sends (see gdfit.redaction)."""
        (self.staged / name).write_text(redact(text), encoding="utf-8")

    def log_dict(self, data: dict, name: str) -> None:
        (self.staged / name).write_text(json.dumps(redact_data(data), indent=2), encoding="utf-8")

    def log_png(self, data: bytes, name: str) -> None:
        """A figure, as PNG bytes (see gdfit.png)."""
        with timing.section("figures"):
            (self.staged / name).write_bytes(data)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Sent at the run's end, as `log_metrics`."""
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_images(self, frames: list, key: str) -> None:
        """(step, RGB uint8 image) pairs as one MLflow image series: the run page's image chart
        steps through them. The files are those `MlflowClient.log_image(key=, step=)` writes
        (a PNG and a compressed WebP per step, named so the UI finds key and step), sent with
        the run's other files and one tag instead of two uploads and a tag per image."""
        import uuid

        from mlflow.tracking.multimedia import compress_image_size
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES
        from PIL import Image

        from gdfit import png

        now = int(time.time() * 1000)
        folder = self.staged / "images"
        folder.mkdir(exist_ok=True)
        with timing.section("frames"):
            for step, pixels in frames:
                name = f"{key}+step+{step}+timestamp+{now}+{uuid.uuid4()}"
                (folder / f"{name}.png").write_bytes(png.encode(pixels))
                image = Image.fromarray(pixels)
                # WebP's fastest method: 3x quicker than its default, the same quality setting
                thumbnail = compress_image_size(image)
                thumbnail.save(folder / f"{name}+compressed.webp", method=0)
        self.set_tags({MLFLOW_LOGGED_IMAGES: "True"})

    def send_files(self, must: bool = True) -> None:
        """Upload what is staged, in one go, and start a new staging folder. With must=False a
        store that cannot take the files (full, read-only, away) is said once and the files
        stay staged: the run goes on, and its end sends them or keeps them on disk."""
        if any(self.staged.iterdir()):
            try:
                with timing.section("artifacts"):
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

    def close(self, status: str) -> TrackingError | None:
        """End the run `status` after sending the rest of its curve, loss.npz and every staged
        file. What the store cannot take is kept on disk (gdfit.unsent): the error that says
        where is returned, for the caller to raise or add to the error that ended the run."""
        metrics, self.curve.pending = self.curve.pending + self.metrics, []
        tags = dict(self.tags)
        try:
            failure = None
            try:
                with timing.section("curve"):
                    self.curve.write(self.staged)
            except OSError as error:  # no room where files are staged: kept, written there
                failure = TrackingError(f"cannot stage the run's loss.npz: {error.strerror}")
            try:
                self.send_files()
            except TrackingError as error:
                failure = failure or error
            try:
                with timing.section("curve"):  # mostly its <= curve_points loss points
                    batch = [RunTag(k, v) for k, v in tags.items()]
                    self.client.log_batch(
                        self.run_id, metrics=metrics, tags=batch, synchronous=True
                    )
                metrics, tags = [], {}
            except TrackingError as error:
                failure = failure or error
            if failure is None:  # else its status would claim data it does not have
                try:
                    with timing.section("params/tags"):
                        self.client.set_terminated(self.run_id, status)
                    return None
                except TrackingError as error:
                    failure = error
            return self._keep(status, failure, metrics, tags)
        finally:
            self._staging.cleanup()

    def _keep(self, status, failure, metrics, tags) -> TrackingError:
        """Keep on disk what `failure` kept from the store; the error that says where. A store
        that still answers is told: the run ends FAILED, tagged where its end is, until sent."""
        from gdfit import unsent

        answers = self.client.away_since is None
        marks = {}
        if answers:
            marks["gdfit.unsent"] = ""  # the folder, once it exists
            if "gdfit.error" not in self.tags:
                marks["gdfit.error"] = f"the end of the run could not be stored ({failure})"
        try:
            folder = unsent.keep(
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
            where = None
        else:
            where = (
                f"run {self.run_id}'s end is kept in {folder} "
                f"({unsent.describe(folder, unsent.read(folder))}); send it with "
                f"`gdfit-send {folder}` once the store can take it"
            )
            said = TrackingError(f"{failure}: {where}")
            marks["gdfit.unsent"] = str(folder)
            if "gdfit.error" in marks:
                marks["gdfit.error"] += f"; kept in {folder}"
        said.where = where or str(said)  # the note for an error that had already ended the run
        said.run_id = self.run_id  # for a sweep's job: the run exists, do not record another
        if answers:
            try:
                marked = [RunTag(k, v[:5000]) for k, v in marks.items() if v]
                self.client.log_batch(self.run_id, tags=marked, synchronous=True)
                self.client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass  # the store that refused the rest: the next command reaps the run
        return said


_reaped: set[tuple[Client, str]] = set()  # (store's client, experiment) tracked_run has reaped


@contextmanager
def tracked_run(cfg: DictConfig, run_name: str, tags: dict[str, str]) -> Iterator[TrackedRun]:
    """Start a run in `tracking.experiment` with the config's params and `tags`; always end it.

    An exception ends the run FAILED with the error as tag `gdfit.error`; Ctrl-C ends it KILLED.
    """
    uri = resolve_uri(cfg.tracking.uri)
    with timing.section("store open"):
        client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    # The client, not the fluent API: no process-global active run to leak between jobs that
    # share a worker, and no GitPython import (~0.2 s). In a sweep the run nests under the
    # sweep's parent run through MLflow's own parent tag.
    tags = {**source_tags(), **tags}
    if parent := os.environ.get(SWEEP_PARENT_ENV):
        tags[MLFLOW_PARENT_RUN_ID] = parent
    tags |= views.group_tag(os.environ.get(SWEEP_NAME_ENV) if parent else None)
    tags[liveness.PROCESS_TAG] = liveness.identity()
    if (client, experiment_id) not in _reaped:  # once a process: a sweep's jobs share it
        with timing.section("store open"):  # a query for runs of this machine whose process died
            reap_lost(client, experiment_id)
        _reaped.add((client, experiment_id))
    with timing.section("params/tags"):
        created = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run = TrackedRun(client, created.info.run_id, cfg.train.steps, cfg.tracking.curve_points)
    run.experiment_id, run.run_name = experiment_id, run_name
    status, ended_by = "FAILED", None
    try:
        # What the run actually used, rather than the null that means "the default".
        used = {"tracking.uri": shown_uri(uri), "tracking.run_name": run_name}
        params = [Param(k, v) for k, v in (flat_params(cfg) | used).items()]
        with timing.section("params/tags"):
            client.log_batch(run.run_id, params=params, synchronous=True)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt as error:
        status, ended_by = "KILLED", error
        error.add_note(f"run {run.run_id} ended KILLED with its loss curve so far")
        raise
    except Exception as error:
        status, ended_by = "FAILED", error
        run.set_tags({"gdfit.error": f"{type(error).__name__}: {error}"[:5000]})
        error.add_note(f"run {run.run_id} ended FAILED")
        error.run_id = run.run_id  # for callers that read the failed run back (gdfit-rerun)
        raise
    finally:
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
            raise kept


def reap_lost(client, experiment_id: str) -> list:
    """End KILLED the RUNNING runs of this machine whose process is gone (SIGKILL, a crash,
    a power cut), saying so; a run whose process still runs, or that ran elsewhere, is left.
    Never fails the caller: this is housekeeping."""
    try:
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    except Exception:
        return []
    reaped = []
    for run in running:
        recorded = run.data.tags.get(liveness.PROCESS_TAG)
        if not recorded or not liveness.is_gone(recorded):
            continue
        try:
            client.log_batch(
                run.info.run_id,
                tags=[RunTag("gdfit.reaped", "its process was gone")],
                synchronous=True,
            )
            client.set_terminated(run.info.run_id, "KILLED")
        except Exception:
            continue
        print(
            f"gdfit: run {run.info.run_id} ({run.info.run_name}) was RUNNING but its process "
            f"({recorded.rsplit(':', 3)[0]} pid {recorded.rsplit(':', 2)[1]}) is gone: "
            "marked KILLED, with the points it had logged",
            file=sys.stderr,
        )
        reaped.append(run)
    return reaped


# ---- sweeps and comparisons: a parent run per sweep, reading runs back ----


def start_parent(uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """Create the RUNNING parent run of a sweep; its jobs find it through SWEEP_PARENT_ENV."""
    client, experiment_id = open_experiment(uri, experiment)
    tags = {**source_tags(), **tags, liveness.PROCESS_TAG: liveness.identity()}
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    return run.info.run_id


def experiment_name(uri: str, experiment_id: str) -> str:
    with reading(uri):
        return connect(uri).get_experiment(experiment_id).name


def reopen_parent(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Mark an ended sweep parent RUNNING again for a resumed sweep, with `tags` updated."""
    client = connect(uri)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
    client.update_run(run_id, status="RUNNING")


def record_failure(cfg: DictConfig, run_name: str, tags: dict[str, str], error: Exception) -> str:
    """A FAILED run for a sweep job that failed before its own run existed (a bad setting, an
    error while preparing the data), with the config's params and the error as `gdfit.error`,
    so that the sweep's parent lists it like any other failed job."""
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    tags = {**source_tags(), **tags, "gdfit.error": f"{type(error).__name__}: {error}"[:5000]}
    if parent := os.environ.get(SWEEP_PARENT_ENV):
        tags[MLFLOW_PARENT_RUN_ID] = parent
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    used = {"tracking.uri": shown_uri(uri), "tracking.run_name": run_name}  # as tracked_run
    params = [Param(k, v) for k, v in (flat_params(cfg) | used).items()]
    client.log_batch(run_id, params=params, synchronous=True)
    client.set_terminated(run_id, "FAILED")
    return run_id


def finish_parent(
    uri: str,
    run_id: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    texts: dict[str, str],
    figures: Path,
    status: str = "FINISHED",
) -> None:
    """End a sweep's parent `status` with its metrics, tags, text files and the PNGs already
    drawn into the folder `figures` (the caller draws them, so that a figure cannot stop the
    rest from being written)."""
    client = connect(uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
        synchronous=True,
    )
    for name, text in texts.items():
        client.log_text(run_id, text, name)
    if any(figures.iterdir()):
        client.log_artifacts(run_id, str(figures))
    client.set_terminated(run_id, status)


def end_if_running(uri: str, run_id: str, status: str) -> None:
    """End `run_id` with `status` unless it has already ended (used when a sweep is cut off)."""
    client = connect(uri)
    with reading(uri):
        running = client.get_run(run_id).info.status == "RUNNING"
    if running:
        client.set_terminated(run_id, status)


def search_runs(
    uri: str, *, parent: str | None = None, experiment: str | None = None, filter_string: str = ""
) -> list:
    """Runs of one sweep (`parent`), or of an experiment matching an MLflow search filter, oldest
    first. Sweep parents themselves are left out of an experiment's list."""
    with reading(uri, "read runs from"):
        return _search_runs(connect(uri), parent, experiment, filter_string)


def _search_runs(client: Client, parent, experiment, filter_string) -> list:
    if parent is not None:
        experiment_id = client.get_run(parent).info.experiment_id
        found = f"tags.mlflow.parentRunId = '{parent}'"
        filter_string = f"{found} and {filter_string}" if filter_string else found
    else:
        known = client.get_experiment_by_name(experiment)
        if known is None:
            return []
        experiment_id = known.experiment_id
    reap_lost(client, experiment_id)  # so that what is read back says what became of it
    runs = client.search_runs(
        [experiment_id], filter_string, max_results=5000, order_by=["attributes.start_time ASC"]
    )
    return [r for r in runs if r.data.tags.get("gdfit.sweep") != "true"]


def loss_curve(
    uri: str, run_id: str, artifact_uri: str | None = None
) -> tuple[list[int], list[float]]:
    """Every step's loss: the run's loss.npz, or for a run logged before gdfit wrote one, its
    `loss` metric (then as thinned as tracking.curve_points made it). `artifact_uri`: the
    run's, when the caller has it (saves asking the store for the run)."""
    curve = full_curve(uri, run_id, artifact_uri)
    if curve is not None:
        return curve[0].tolist(), curve[1].tolist()
    return metric_curve(uri, run_id)


def metric_curve(uri: str, run_id: str) -> tuple[list[int], list[float]]:
    with reading(uri):
        history = sorted(connect(uri).get_metric_history(run_id, "loss"), key=lambda m: m.step)
    return [m.step for m in history], [m.value for m in history]


def full_curve(
    uri: str, run_id: str, artifact_uri: str | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, losses) from the run's loss.npz; None when it has none (an older run) or one
    that cannot be read: a sweep job's worker killed while it sent the file (joblib kills its
    workers when the sweep is stopped) leaves it cut short. The caller then reads the `loss`
    metric, which the run logged as it went.

    Read through the run's artifact repository one file at a time: MlflowClient's download
    goes through a thread pool, which Python refuses once it is exiting, and a sweep cut off
    by Ctrl-C draws its comparison from an atexit hook."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with reading(uri):
        artifact_uri = artifact_uri or connect(uri).get_run(run_id).info.artifact_uri
        repo = get_artifact_repository(artifact_uri, tracking_uri=uri)
        if not any(f.path == CURVE_FILE for f in repo.list_artifacts()):
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / CURVE_FILE
            repo._download_file(CURVE_FILE, str(path))
            try:
                with np.load(path) as saved:
                    return saved["steps"], saved["losses"]
            except (ValueError, EOFError, zipfile.BadZipFile) as error:  # empty, 1-3 bytes, more
                print(
                    f"gdfit: warning: run {run_id}'s {CURVE_FILE} is cut short or damaged "
                    f"({type(error).__name__}; its process was likely stopped while sending "
                    "it): using its loss metric",
                    file=sys.stderr,
                )
                return None


def run_tags(uri: str, run_id: str) -> dict[str, str]:
    with reading(uri):
        return connect(uri).get_run(run_id).data.tags


def read_config(uri: str, run) -> tuple[str, str]:
    """The name of `run`'s experiment and the text of its logged config.yaml; TrackingError
    when the file is missing or unreadable."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = connect(uri)
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(run_id, "config.yaml", folder)
            text = Path(path).read_bytes()
    except Exception as error:
        if is_outage(error):  # the server, not the file, is missing
            raise store_error(uri, error) from error
        raise TrackingError(f"run {run_id} has no config.yaml artifact to rerun from") from error
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrackingError(f"config.yaml of run {run_id} is not text") from error
    with reading(uri):
        return client.get_experiment(run.info.experiment_id).name, decoded


def artifact_bytes(uri: str, run_id: str, name: str) -> bytes | None:
    """The content of artifact `name` of a run (fit.png, loss.png, ...), or None when the run
    has none of that name."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = connect(uri).download_artifacts(run_id, name, folder)
        except Exception as error:  # MLflow raises its own and OSError kinds for a missing file
            if is_outage(error):  # the server, not the file, is missing
                raise store_error(uri, error) from error
            return None
        return Path(path).read_bytes()


def record_verdict(uri: str, run_id: str, of: str, overrides: list[str], verdict: str) -> None:
    """Tag a rerun with its verdict and add what it changed and how it came out to its
    description."""
    client = connect(uri)
    with reading(uri):
        note = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    changed = f" with `{' '.join(overrides)}`" if overrides else " with the logged config"
    line = f"**Rerun** of `{of}`{changed}: {verdict}"
    text = f"{line}\n\n{note}" if note else line
    client.log_batch(
        run_id,
        tags=[RunTag("gdfit.rerun_verdict", verdict[:5000]), RunTag(NOTE_TAG, text[:5000])],
        synchronous=True,
    )


# ---- finding runs by what a user types: an id, an id prefix or a run name ----

_HEX = re.compile(r"[0-9a-f]{1,32}")


def find_run(uri: str, ref: str):
    """The run `ref` names, and how it was found (None for an exact id, else a sentence).

    `ref` is a full run id, a unique prefix of one (git-style: an ambiguous prefix lists the
    candidates) or a run name (the newest run of that name). UsageError when nothing matches.
    """
    with reading(uri, "read runs from"):
        return _find_run(connect(uri), uri, ref)


def _find_run(client: Client, uri: str, ref: str):
    from gdfit.errors import UsageError

    ref = ref.strip()
    if len(ref) == 32 and _HEX.fullmatch(ref):
        try:
            return client.get_run(ref), None
        except Exception as error:
            if "not found" not in str(error).lower() and "does not exist" not in str(error):
                raise
    if any(c in ref for c in "'\"\\") or not ref:  # never inside a search filter
        raise UsageError(f"no run {ref!r}: not a run id, id prefix or run name")
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        raise UsageError(f"no run {ref!r} in {uri}: the store holds no experiments")
    if len(ref) >= 4 and _HEX.fullmatch(ref):
        found = client.search_runs(experiments, f"attributes.run_id LIKE '{ref}%'", max_results=20)
        if len(found) == 1:
            return found[0], None
        if len(found) > 1:
            listed = "; ".join(f"{r.info.run_id[:12]} {r.info.run_name}" for r in found[:10])
            raise UsageError(f"run id prefix {ref!r} is ambiguous: {listed}")
    named = client.search_runs(
        experiments,
        f"attributes.run_name = '{ref}'",
        max_results=50,
        order_by=["attributes.start_time DESC"],
    )
    if not named:
        raise UsageError(f"no run {ref!r} in {uri}: not a run id, id prefix or run name")
    newest = named[0]
    how = (
        f"{ref!r} is run {newest.info.run_id}"
        if len(named) == 1
        else f"{ref!r} names {len(named)} runs; using the newest, {newest.info.run_id}"
    )
    return newest, how


def experiment_names(uri: str) -> list[str]:
    with reading(uri, "read runs from"):
        return sorted(e.name for e in connect(uri).search_experiments())

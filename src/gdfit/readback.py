"""Reading runs back from MLflow: finding them by what a user types, their curves and files,
and the one table of runs that summary.csv, gdfit-compare, gdfit.runs and a sweep's
description all show."""

import csv
import io
import math
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gdfit.client import Client, connect, is_outage, reading, store_error
from gdfit.curve import CURVE_FILE
from gdfit.errors import TrackingError, UsageError
from gdfit.redaction import redact
from gdfit.runlog import DIVERGED_TAG
from gdfit.store import experiment_names, reap_lost

# ---- finding runs: a sweep's jobs, an experiment's runs, or what a user names ----


def search_runs(
    uri: str, *, parent: str | None = None, experiment: str | None = None, filter_string: str = ""
) -> list:
    """Runs of one sweep (`parent`), or of an experiment matching an MLflow search filter, oldest
    first. Sweep parents themselves are left out of an experiment's list."""
    with reading(uri, "read runs from"):
        client = connect(uri)
        if parent is not None:
            experiment_id = client.get_run(parent).info.experiment_id
            found = f"tags.mlflow.parentRunId = '{parent}'"
            filter_string = f"{found} and {filter_string}" if filter_string else found
        else:
            known = client.get_experiment_by_name(experiment or "gdfit")
            if known is None:
                return []
            experiment_id = known.experiment_id
        reap_lost(client, experiment_id)  # so that what is read back says what became of it
        runs = client.search_runs(
            [experiment_id], filter_string, max_results=5000, order_by=["attributes.start_time ASC"]
        )
    return [r for r in runs if r.data.tags.get("gdfit.sweep") != "true"]


_HEX = re.compile(r"[0-9a-f]{1,32}")
PREFIX_MIN = 4  # hex digits of the shortest run id prefix looked up


def find_run(uri: str, ref: str) -> tuple[Any, str | None]:
    """The run `ref` names, and how it was found (None for an exact id, else a sentence).

    `ref` is a full run id, a unique prefix of one (git-style: an ambiguous prefix lists the
    candidates) or a run name (the newest run of that name). UsageError when nothing matches.
    """
    with reading(uri, "read runs from"):
        return _find_run(connect(uri), uri, ref.strip())


def _find_run(client: Client, uri: str, ref: str) -> tuple[Any, str | None]:
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
    if len(ref) >= PREFIX_MIN and _HEX.fullmatch(ref):
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
    if not named and len(ref) < PREFIX_MIN and _HEX.fullmatch(ref):
        raise UsageError(
            f"no run named {ref!r} in {uri}, and an id prefix needs at least {PREFIX_MIN} "
            "characters"
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


def select(
    uri: str,
    refs: list[str],
    parent: str | None,
    experiment: str | None,
    filter_string: str,
    say: Callable[[str], None],
) -> tuple[list, str | None]:
    """(the runs, the parent's run id or None): the runs gdfit-compare and gdfit.runs show,
    oldest first: those named by `refs` (run ids, id prefixes or run names; a sweep's parent
    stands for its jobs), the jobs of sweep `parent`, or the runs of `experiment` (sweep parents
    left out), the last two narrowed by the MLflow search `filter_string`. `say(how)` is told
    how a run name was resolved ("'x' is run <id>"). UsageError for an unknown run or
    experiment."""

    def resolve(ref: str) -> Any:
        run, how = find_run(uri, ref)
        if how:
            say(how)
        return run

    if experiment is not None:
        names = experiment_names(uri)
        if redact(experiment) not in names:  # stored as the filter left it
            raise UsageError(
                f"no experiment {experiment!r} in {uri}; "
                f"experiments there: {', '.join(names) or 'none'}"
            )
        return search_runs(uri, experiment=experiment, filter_string=filter_string), None
    if parent is not None:
        parent_id = resolve(parent).info.run_id
        picked = search_runs(uri, parent=parent_id, filter_string=filter_string)
        if not picked and not filter_string:
            raise UsageError(f"run {parent_id} has no child runs: it is not a sweep parent")
        return picked, parent_id
    picked, seen = [], set()
    for ref in refs:
        run = resolve(ref)
        is_sweep = run.data.tags.get("gdfit.sweep") == "true"
        for member in search_runs(uri, parent=run.info.run_id) if is_sweep else [run]:
            if member.info.run_id not in seen:
                seen.add(member.info.run_id)
                picked.append(member)
    return picked, None


# ---- a run's curve and files ----


@dataclass
class Curve:
    """A run's loss at every step it logged, and its parameters at a few steps."""

    steps: np.ndarray  # (n,) int64
    losses: np.ndarray  # (n,) float64, the loss before the update at each step
    snapshots: dict[int, np.ndarray]  # step -> parameters after that many updates (may be {})


def loss_curve(uri: str, run_id: str, artifact_uri: str | None = None) -> Curve:
    """Every step's loss: the run's loss.npz, or for a run logged before gdfit wrote one, its
    `loss` metric (then as thinned as tracking.curve_points made it). `artifact_uri`: the
    run's, when the caller has it (saves asking the store for the run)."""
    return saved_curve(uri, run_id, artifact_uri) or metric_curve(uri, run_id)


def metric_curve(uri: str, run_id: str) -> Curve:
    with reading(uri):
        history = sorted(connect(uri).get_metric_history(run_id, "loss"), key=lambda m: m.step)
    steps = np.array([m.step for m in history], dtype=np.int64)
    return Curve(steps, np.array([m.value for m in history], dtype=np.float64), {})


def saved_curve(uri: str, run_id: str, artifact_uri: str | None = None) -> Curve | None:
    """The run's loss.npz; None when it has none (an older run) or one that cannot be read: a
    sweep job's worker killed while it sent the file (joblib kills its workers when the sweep
    is stopped) leaves it cut short. The caller then reads the `loss` metric."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file: no bar
    with reading(uri):
        artifact_uri = artifact_uri or connect(uri).get_run(run_id).info.artifact_uri
        repo = get_artifact_repository(artifact_uri, tracking_uri=uri)
        if not any(f.path == CURVE_FILE for f in repo.list_artifacts()):
            return None
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = repo.download_artifacts(CURVE_FILE, folder)
                with np.load(path) as saved:
                    marks = saved["snapshot_steps"] if "snapshot_steps" in saved else []
                    taken = {int(s): saved["snapshots"][i] for i, s in enumerate(marks)}
                    return Curve(saved["steps"], saved["losses"], taken)
            except (ValueError, EOFError, zipfile.BadZipFile) as error:  # empty, 1-3 bytes, more
                print(
                    f"gdfit: warning: run {run_id}'s {CURVE_FILE} is cut short or damaged "
                    f"({type(error).__name__}; its process was likely stopped while sending "
                    "it): using its loss metric",
                    file=sys.stderr,
                )
                return None
            except RuntimeError:  # a thread pool refused at exit: the metric will do
                return None


def artifact_text(uri: str, run: Any, name: str) -> str:
    """The text of artifact `name` (config.yaml) of `run`; TrackingError when it is missing or
    not text."""
    data = artifact_bytes(uri, run.info.run_id, name)
    if data is None:
        raise TrackingError(f"run {run.info.run_id} has no {name} artifact to rerun from")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrackingError(f"{name} of run {run.info.run_id} is not text") from error


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


# ---- the table of runs ----

# Settings that say which run is which, under short titles, in every table; any other setting
# that differs between the runs gets a column under its dotted name.
SETTINGS = {
    "model": "model.name",
    "backend": "backend.name",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "seed": "train.seed",
}


def swept_keys(runs: list) -> list[str]:
    """Params whose values differ between the runs (run names, tracking and the resume of a
    sweep aside)."""
    keys = sorted({k for r in runs for k in r.data.params})
    differ = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    return [k for k in differ if not k.startswith(("tracking.", "sweep."))]


def coefficient_keys(runs: list) -> list[str]:
    found = {k for r in runs for k in r.data.metrics if k.startswith("coef_")}
    return sorted(found, key=lambda k: int(k.split("_")[1]))


def table(runs: list) -> tuple[list[str], list[dict]]:
    """Column names and one dict per run: id, name, the settings that say which run it is and
    those that differ, its status and `ended` (why it did not finish, see `ended`), results,
    coefficients and seconds. Values are the store's: params as text, metrics as floats, None
    where a run has none. Each row also holds, outside the columns, `diverged` (see
    `diverged`)."""
    shown = set(SETTINGS.values())
    extra = [k for k in swept_keys(runs) if k not in shown]
    coefs = coefficient_keys(runs)
    metrics = ["final_loss", "loss_gap", *coefs, "train_seconds"]
    columns = ["run_id", "run_name", *SETTINGS, *extra, "status", "ended", *metrics]
    rows = []
    for r in runs:
        params = r.data.params
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name}
        row |= {title: params.get(key) for title, key in SETTINGS.items()}
        row |= {key: params.get(key) for key in extra}
        row["status"], row["ended"] = r.info.status, ended(r, detail=True)
        row["diverged"] = diverged(r)
        row |= {key: r.data.metrics.get(key) for key in metrics}
        rows.append(row)
    return columns, rows


def to_csv(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if r[c] is None else r[c] for c in columns] for r in rows])
    return out.getvalue()


def ended(run: Any, detail: bool = False) -> str:
    """Empty for a finished run; else how it ended, from its tags: `diverged at step 3`,
    `failed` (with `detail`: the error's first line), `killed`, `running or lost`."""
    if run.info.status == "FINISHED":
        return ""
    tags = run.data.tags
    if diverged(run):
        return f"diverged at step {tags[DIVERGED_TAG]}"
    if detail and "gdfit.error" in tags:
        return tags["gdfit.error"].splitlines()[0][:300]
    return {"RUNNING": "running or lost"}.get(run.info.status, run.info.status.lower())


def diverged(run: Any) -> bool:
    """Whether the run ended because its loss diverged (tag gdfit.diverged_at_step; its status
    is FAILED). In a sweep that is a result of the search, a rate too large, not a failure of
    the command: sweeps report it apart from the jobs that failed, and exit 0 for it. The one
    place that tells the two apart, for every launcher."""
    return run.info.status != "FINISHED" and DIVERGED_TAG in run.data.tags


def final_loss(run: Any) -> float:
    """The run's final loss; +inf for a run that did not finish with one."""
    loss = run.data.metrics.get("final_loss", math.inf)
    return loss if run.info.status == "FINISHED" and math.isfinite(loss) else math.inf


# What a run's final loss is a loss of: its model (less the start point and the seed of its
# draws) and its data. Runs that share these rank by final loss; across them a model with more
# parameters, or fewer points, reaches a lower loss without being better fitted.
NOT_THE_PROBLEM = ("model.init", "model.seed")


def _problem(run: Any) -> frozenset:
    params = run.data.params
    return frozenset(
        (k, v)
        for k, v in params.items()
        if k.startswith(("model.", "data.")) and k not in NOT_THE_PROBLEM
    )


def ranking(runs: list) -> str:
    """What `ranked` orders `runs` by: "final_loss" when the finished ones fit one model to one
    data set, else "loss_gap" (each run's gap to its own model's least-squares optimum)."""
    problems = {_problem(r) for r in runs if math.isfinite(final_loss(r))}
    return "final_loss" if len(problems) <= 1 else "loss_gap"


RANKINGS = {
    "final_loss": "by final_loss",
    "loss_gap": "by loss_gap: models or data differ, so each run against its own optimum",
}


def ranked(runs: list) -> list:
    """Best first, as `ranking` says: finished runs by final loss, or by their gap to their
    own model's optimum (then those whose model has none, by final loss); then the runs that
    did not finish, in their order."""
    by_gap = ranking(runs) == "loss_gap"

    def key(run: Any) -> tuple[int, float]:
        loss = final_loss(run)
        if not math.isfinite(loss):
            return 2, 0.0
        gap = run.data.metrics.get("loss_gap") if by_gap else None
        return (1, loss) if by_gap and gap is None else (0, loss if gap is None else gap)

    return sorted(runs, key=key)


def best(runs: list) -> Any:
    """The best finished run as `ranked` orders them, or None."""
    first = ranked(runs)[:1]
    return first[0] if first and math.isfinite(final_loss(first[0])) else None

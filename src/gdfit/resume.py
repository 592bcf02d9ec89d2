"""Resuming a sweep (`sweep.resume=<parent id or name>`): reopen its parent for this process,
claimed so that no two processes run it at once, and know its configs that FINISHED before, so
that each job runs only what is still to do. A config is known by its logged params, less the
settings that do not change the fit (`fingerprint`).
"""

import math
import os
from typing import Any

from mlflow.entities import RunTag
from omegaconf import DictConfig

from gdfit import liveness, readback, views
from gdfit.client import connect, reading
from gdfit.errors import ConfigError, GdfitError, TrackingError
from gdfit.runlog import PARENT_ENV, flat_params
from gdfit.store import resolve_uri

# Settings that do not change what a job computes or records: a resumed sweep may name the store
# another way or print less, the run name follows from the rest, and sweep.resume is its own.
NOT_THE_FIT = ("tracking.uri", "tracking.run_name", "train.log_every", "sweep.")

FINISHED = "attributes.status = 'FINISHED'"  # an MLflow search filter


def fingerprint(params: dict[str, str]) -> frozenset:
    """What identifies a job's config among a sweep's children: its logged params, less the
    settings that do not change the fit (unset ones count as absent, as older runs logged them
    as "None" and newer ones as "null")."""
    return frozenset(
        (k, v)
        for k, v in params.items()
        if not k.startswith(NOT_THE_FIT) and v not in ("None", "null")
    )


def latest_attempts(found: list) -> list:
    """One entry per config of a sweep: its FINISHED runs, else its newest attempt. A resumed
    sweep's parent also holds the attempts that a later one replaced. `found`: oldest first.

    A child with no params (an older gdfit's, stopped between its creation and its params)
    names its config only by its run name: it counts until a run of that name has FINISHED."""
    by_config: dict[frozenset, list] = {}
    unknown: list = []
    for run in found:
        config = fingerprint(run.data.params)
        (by_config.setdefault(config, []) if config else unknown).append(run)
    kept = []
    for attempts in by_config.values():
        kept += [r for r in attempts if r.info.status == "FINISHED"] or attempts[-1:]
    done = {r.info.run_name for r in kept if r.info.status == "FINISHED"}
    kept += [r for r in unknown if r.info.run_name not in done]
    return sorted(kept, key=lambda r: r.info.start_time)


def finished_jobs(cfg: DictConfig) -> dict[frozenset, Any]:
    """When resuming, the sweep's FINISHED children by their config's fingerprint; else {}."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or cfg.sweep.resume is None:
        return {}
    uri = resolve_uri(cfg.tracking.uri)
    found = readback.search_runs(uri, parent=parent, filter_string=FINISHED)
    return {fingerprint(run.data.params): run for run in found}


def finished_before(
    cfg: DictConfig, run_name: str, done: dict[frozenset, Any] | None = None
) -> float | None:
    """When resuming, the final loss of this config's FINISHED child (said in one line), if
    the sweep has one. `done`: `finished_jobs`, read once for many configs."""
    if cfg.sweep.resume is None:
        return None
    run = (finished_jobs(cfg) if done is None else done).get(fingerprint(flat_params(cfg)))
    if run is None:
        return None
    print(f"gdfit: {run_name}: FINISHED before as run {run.info.run_id}; skipped")
    return run.data.metrics.get("final_loss", math.inf)


def reopen(uri: str, ref: str, experiment: str, tags: dict[str, str]) -> tuple[str, str]:
    """Reopen sweep `ref` (its parent's id, id prefix or name) of `experiment` in `uri` for
    this process, RUNNING again with `tags`: (parent run id, sweep name)."""
    try:
        found, how = readback.find_run(uri, ref)
    except GdfitError as error:
        why = f"must name a sweep's parent run (its id, id prefix or name); {error}"
        raise ConfigError("sweep.resume", why) from error
    if how:
        print(f"gdfit: sweep.resume: {how}", flush=True)
    if found.data.tags.get("gdfit.sweep") != "true":
        raise ConfigError("sweep.resume", "names a run that is not a sweep's parent", ref)
    client = connect(uri)
    with reading(uri):
        found_in = client.get_experiment(found.info.experiment_id).name
    if found_in != experiment:
        raise ConfigError(
            "sweep.resume",
            f"names a sweep of experiment {found_in!r}: add tracking.experiment={found_in}",
            ref,
        )
    parent, name = found.info.run_id, found.info.run_name
    _claim(client, uri, found, tags[liveness.PROCESS_TAG])
    resumed = int(found.data.tags.get("gdfit.resumes", "0")) + 1
    # with this process (not reaped), in its sweep's group
    tags = {**tags, "gdfit.resumes": str(resumed), **views.group_tag(name)}
    client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
    if "gdfit.reaped" in found.data.tags:  # an earlier end's, not this one's
        client.delete_tag(parent, "gdfit.reaped")
    client.update_run(parent, status="RUNNING")
    print(f"gdfit: sweep {name}: resuming parent run {parent}", flush=True)
    return parent, name


def _claim(client: Any, uri: str, found: Any, me: str) -> None:
    """Make this process the one resuming sweep `found`, or refuse: a sweep whose process
    still runs, or that another resume has just claimed, is not run twice. The claim is a
    param of the parent, `gdfit.resume.<n>` = the process: the store keeps the first value
    a param is given and refuses another, also to two resumes at once."""
    owner = found.data.tags.get(liveness.PROCESS_TAG, "")
    parent, name = found.info.run_id, found.info.run_name
    busy = f"sweep {name} is being run by another process"
    if found.info.status == "RUNNING" and liveness.is_gone(owner) is False:
        pid = owner.rsplit(":", 2)[1]
        raise ConfigError("sweep.resume", f"{busy} (pid {pid}): wait for it to end")
    turn = f"gdfit.resume.{int(found.data.tags.get('gdfit.resumes', '0')) + 1}"
    try:
        client.log_param(parent, turn, me)
        return
    except TrackingError as error:
        refused = error
    with reading(uri):
        holder = client.get_run(parent).data.params.get(turn)
    if holder is None:
        raise refused
    if holder != me:
        raise ConfigError("sweep.resume", f"{busy}, which resumed it just now: wait for it")

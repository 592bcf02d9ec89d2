"""A sweep as one MLflow parent run with a child run per job, wherever the jobs run.

- open (`Sweep.open`, in the submitting process): create the parent run, or reopen it for
  `sweep.resume=<parent id or name>` (gdfit.resume), and return the environment its jobs need
  to find it (gdfit.cli hands it to Hydra's jobs through `hydra.job.env_set`; gdfit.sweep sets
  it here);
- each job (`run_job`, in whatever process or host runs it): skip a config that already has a
  FINISHED child when resuming; otherwise fit, and whatever goes wrong, leave a FAILED child with
  the reason and return +inf so that the other jobs go on;
- finish (`Sweep.finish`, back in the submitting process): write summary.csv, comparison.png,
  final_loss_vs_<key>.png for each numeric setting swept and the best run on the parent, draw
  the best runs' figures when the jobs did not (tracking.figures=auto, a large sweep), end the
  parent and say how to look at it. A sweep cut off (Ctrl-C, a launcher error) still gets the
  summary of what it has, and its parent ends KILLED.
"""

import atexit
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from omegaconf import DictConfig

from gdfit import (
    comparisons,
    config,
    console,
    environment,
    liveness,
    notes,
    readback,
    redraw,
    resume,
    views,
)
from gdfit.client import connect, reading
from gdfit.environment import git_state, git_tags, share_git_state
from gdfit.errors import ConfigError, Diverged, GdfitError, TrackingError
from gdfit.redaction import is_public, redact
from gdfit.runlog import (
    FIGURES_LEFT,
    JOBS_ENV,
    NAME_ENV,
    PARENT_ENV,
    run_params,
    run_tags,
)
from gdfit.store import default_uri, open_experiment, resolve_uri, source_tags, store_option

MAX_FAILURES_SHOWN = 10


class SweepFailed(GdfitError):
    """The sweep ran to its end, but some of its jobs failed (exit 1)."""


def check_single_run(cfg: DictConfig) -> None:
    """A single run has no sweep to resume: refuse `sweep.resume` without -m."""
    if cfg.sweep.resume is not None:
        raise ConfigError("sweep.resume", "resumes a sweep: add -m and the sweep's own overrides")


def run_job(cfg: DictConfig, fit: Callable[[Callable[[str], None]], float], run_name: str) -> float:
    """One job of a sweep: `fit(opened)` (which logs the child run, tells `opened` its id once
    it exists, and returns its final loss), unless a resumed sweep already has this config
    FINISHED. A failure of any kind leaves a FAILED child with its reason and returns +inf,
    which the Optuna sweeper scores as the worst trial; the sweep goes on and reports it at the
    end."""
    before = resume.finished_before(cfg, run_name)
    if before is not None:
        return before
    created: list[str] = []
    try:
        return fit(created.append)
    except Diverged as error:  # a result of the search, said once, in the job's line
        print(console.diverged_line(created[0] if created else "", run_name, error), flush=True)
        return math.inf
    except Exception as error:
        return job_failed(cfg, run_name, error, bool(created))


def job_failed(cfg: DictConfig, run_name: str, error: Exception, created: bool) -> float:
    """Say why a job failed; a failure before its run existed (`created` False: a bad
    setting, an error while preparing the data) gets a FAILED child of its own, one inside
    the run has ended it FAILED with the reason already. Returns +inf, the job's score."""
    reason = str(error) if isinstance(error, GdfitError) else f"{type(error).__name__}: {error}"
    print(f"gdfit: error: {run_name}: {reason}", flush=True)
    if os.environ.get(PARENT_ENV) and not created:
        try:
            record_failure(cfg, run_name, {"gdfit.version": environment.VERSION}, error)
        except Exception as unrecorded:
            print(f"gdfit: error: {run_name}: not recorded: {unrecorded}", flush=True)
    return math.inf


def record_failure(
    cfg: DictConfig, run_name: str, tags: dict[str, str], error: BaseException
) -> str:
    """A FAILED run for a sweep job that failed before its own run existed (a bad setting, an
    error while preparing the data), with the config's params and the error as `gdfit.error`,
    so that the sweep's parent lists it like any other failed job."""
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    tags = run_tags({**tags, "gdfit.error": f"{type(error).__name__}: {error}"[:5000]})
    del tags[liveness.PROCESS_TAG]  # it ends here: nothing for a later command to reap
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    client.log_batch(run_id, params=run_params(cfg, uri, run_name), synchronous=True)
    client.set_terminated(run_id, "FAILED")
    return run_id


class Sweep:
    """The parent run of one sweep, from `open` to `finish`."""

    def __init__(self) -> None:
        self.uri = self.parent = self.name = ""
        self.view: str | None = None
        self.sweep_yaml = ""  # the sweep's own config, logged on the parent as sweep.yaml

    def open(
        self,
        uri: str,
        experiment: str,
        overrides: list[str],
        sweeper: str,
        launcher: str,
        jobs: int | None,
        resume_ref: str | None = None,
    ) -> dict[str, str]:
        """Create the RUNNING parent run of a sweep of `jobs` jobs (None: not known) over
        `overrides`, or reopen sweep `resume_ref` (gdfit.resume), in `uri`; return the
        environment its jobs need. `sweeper` and `launcher` name what runs the jobs, for the
        parent's tags."""
        self.uri = uri
        tags = {
            "gdfit.sweep": "true",
            "gdfit.version": environment.VERSION,
            "gdfit.sweep_overrides": " ".join(overrides)[:5000],
            "gdfit.sweeper": sweeper,
            "gdfit.launcher": launcher,
            liveness.PROCESS_TAG: liveness.identity(),
        }
        git = git_state()
        share_git_state(git)  # for the jobs run in this process, until finish()
        tags |= git_tags(git)
        client, experiment_id = open_experiment(uri, experiment)
        if resume_ref is None:  # unique, so that two sweeps started in one second stay apart
            self.name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            tags = {**source_tags(), **tags, **views.group_tag(self.name)}  # with its jobs
            created = client.create_run(experiment_id, run_name=self.name, tags=tags)
            self.parent = created.info.run_id
            print(f"gdfit: sweep {self.name}: parent run {self.parent}", flush=True)
        else:
            self.parent, self.name = resume.reopen(self.uri, resume_ref, experiment, tags)
        atexit.register(self._cut_off)  # Ctrl-C or a crash: the parent must not stay RUNNING
        handed = {PARENT_ENV: self.parent, NAME_ENV: self.name}
        if jobs is not None:
            handed[JOBS_ENV] = str(jobs)
        if is_public(self.uri):
            # The store the parent is in, for a job whose tracking.uri is unset or comes from
            # the environment (tracking=server); an explicit tracking.uri still comes first.
            handed["MLFLOW_TRACKING_URI"] = self.uri
        return handed

    def finish(self, status: str) -> tuple[list, list]:
        """Write the summary of the jobs so far on the parent, end it with `status`, print how
        to look at it; (jobs, failed ones), one per config, oldest first. A job whose loss
        diverged is not among the failed ones (readback.diverged): it is a result."""
        share_git_state(None)  # later runs in this process ask git again
        jobs = resume.latest_attempts(readback.search_runs(self.uri, parent=self.parent))
        best = readback.best(jobs)
        diverged = [r for r in jobs if readback.diverged(r)]
        failed = [r for r in jobs if r.info.status != "FINISHED" and r not in diverged]
        metrics = {"best_final_loss": best.data.metrics["final_loss"]} if best else {}
        tags = {
            "gdfit.jobs": str(len(jobs)),
            "gdfit.diverged_jobs": str(len(diverged)),
            "gdfit.failed_jobs": str(len(failed)),
        }
        if best:
            tags["gdfit.best_run_id"] = best.info.run_id
        self.view = views.address(self.uri, jobs[0].info.experiment_id) if jobs else None
        columns, rows = readback.table(readback.ranked(jobs))
        ranking = readback.RANKINGS[readback.ranking(jobs)]
        tags[notes.NOTE_TAG] = notes.sweep_note(
            columns,
            rows,
            self.parent,
            store=store_option(self.uri, lasting=True),
            view=views.route(jobs[0].info.experiment_id) if jobs else None,
            best_id=best.info.run_id if best else None,
            ranking=ranking,
            run_link=lambda run_id: views.route(jobs[0].info.experiment_id, run_id),
        )
        texts = {
            "summary.csv": readback.to_csv(*readback.table(jobs)),
            "sweep.yaml": self.sweep_yaml,
        }
        with tempfile.TemporaryDirectory(prefix="gdfit-sweep-") as folder:
            if jobs:
                _draw_figures(self.uri, jobs, Path(folder))
            _end_parent(self.uri, self.parent, metrics, tags, texts, Path(folder), status)
        lines = self._closing_lines(status, jobs, diverged, failed, best, ranking)
        for line in lines:
            print(f"gdfit: {line}", flush=True)
        if best:
            _best_model(self.uri, best, status)
        atexit.unregister(self._cut_off)  # the parent has ended
        return jobs, failed

    def _closing_lines(
        self, status: str, jobs: list, diverged: list, failed: list, best: Any, ranking: str
    ) -> list[str]:
        done = "done" if status == "FINISHED" else f"ended {status}"
        finished = len(jobs) - len(diverged) - len(failed)
        lines = [
            f"sweep {self.name} {done}: {len(jobs)} jobs, {finished} finished, "
            f"{len(diverged)} diverged, {len(failed)} failed"
        ]
        if best:
            loss, gap = best.data.metrics["final_loss"], best.data.metrics.get("loss_gap")
            gaps = "" if gap is None else f" gap {gap:.3g}"
            name = f"{best.info.run_id[:8]} {best.info.run_name}"
            lines.append(f"best {name}: final_loss {loss:.8g}{gaps}")
            if ranking != readback.RANKINGS["final_loss"]:
                lines.append(f"ranked {ranking}")
        for run in failed[:MAX_FAILURES_SHOWN]:
            reason = run.data.tags.get("gdfit.error", "stopped before it finished")
            lines.append(f"  {run.info.run_name} {run.info.status}: {reason.splitlines()[0]}")
        if len(failed) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more")
        lines.append(f"parent run {self.parent}")
        lines.append(f"compare its runs: {_compare_command(self.parent, self.uri)}")
        if self.view:
            local = self.uri.startswith("sqlite:")
            ui = f"gdfit-ui{store_option(self.uri)}, then " if local else ""
            lines.append(f"view them: {ui}{self.view}")
        return lines

    def ended_early(self) -> None:
        """The jobs ended but the summary failed: say it once, and end the parent FAILED."""
        atexit.unregister(self._cut_off)
        try:
            end_if_running(self.uri, self.parent, "FAILED")
        except Exception:
            pass  # the next command on this machine that reads the store ends it (reap_lost)

    def _cut_off(self) -> None:
        """At exit with the parent still RUNNING: summarise what the jobs left, end it KILLED."""
        if not self.parent:
            return
        try:
            self.finish("KILLED")
        except BaseException as error:  # a store gone, a second signal: do not leave it RUNNING
            why = str(error) or type(error).__name__
            print(
                f"gdfit: error: the sweep's summary was not written: {redact(why)}", file=sys.stderr
            )
            try:
                end_if_running(self.uri, self.parent, "KILLED")
            except Exception as ended:
                print(
                    f"gdfit: error: parent run {self.parent} could not be ended ({ended}); the "
                    "next gdfit command on this machine that reads the store ends it KILLED",
                    file=sys.stderr,
                )


def _draw_figures(uri: str, jobs: list, folder: Path) -> None:
    """A sweep's figures as PNGs in `folder` (final_loss_vs_<key>.png, comparison.png), and
    the figures of its best jobs when they did not draw their own (tracking.figures=auto in a
    large sweep). A figure that cannot be drawn is said and left out: the summary does not
    hang on it. What the store cannot give (the jobs' curves) still fails the caller."""
    drawers = {
        "final_loss_vs_<key>.png": lambda: comparisons.versus_figures(jobs),
        "comparison.png": lambda: {"comparison.png": comparisons.comparison(uri, jobs)},
    }
    for what, draw in drawers.items():
        try:
            for name, figure in draw().items():
                figure.savefig(folder / name)
        except TrackingError:
            raise
        except Exception as error:
            _say_not_drawn(f"the sweep's {what} was", error)
    undrawn = [r for r in readback.ranked(jobs) if r.data.tags.get("gdfit.figures") == FIGURES_LEFT]
    client = connect(uri)
    for run in undrawn[: config.FIGURES_AUTO_BEST]:
        if math.isfinite(readback.final_loss(run)):
            try:
                redraw.log(client, uri, run)
                client.set_tag(run.info.run_id, "gdfit.figures", "drawn at the sweep's end")
            except Exception as error:
                _say_not_drawn(f"the figures of {run.info.run_name} were", error)


def _best_model(uri: str, best: Any, status: str) -> None:
    """The best job's fit as an MLflow model (its jobs log none), as that job was set:
    tracking.log_model, and tracking.register once the sweep has finished. A failure is said;
    the sweep stands, and gdfit-register can do it later."""
    from gdfit import champion

    wanted = best.data.params
    try:
        if wanted.get("tracking.register") == "True" and status == "FINISHED":
            print(f"gdfit: {champion.register(uri, best.info.run_id).said}", flush=True)
        elif wanted.get("tracking.log_model", "True") == "True":
            champion.model_of(uri, best)
    except Exception as error:
        said = ": ".join([type(error).__name__, *str(error).strip().splitlines()[:1]])
        print(f"gdfit: warning: the best run's model: {redact(said)}", file=sys.stderr)


def _say_not_drawn(what: str, error: Exception) -> None:
    said = ": ".join([type(error).__name__, *str(error).strip().splitlines()[:1]])
    print(f"gdfit: warning: {what} not drawn: {redact(said)}", file=sys.stderr)


def _end_parent(
    uri: str,
    run_id: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    texts: dict[str, str],
    figures: Path,
    status: str,
) -> None:
    """End a sweep's parent `status` with its metrics, tags, text files and the PNGs already
    drawn into the folder `figures`."""
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


def _compare_command(parent: str, uri: str) -> str:
    """The gdfit-compare command for this sweep, as this shell would find it."""
    here = Path(sys.argv[0]).with_name("gdfit-compare")
    program = str(here) if here.is_file() else "gdfit-compare"
    store = "" if uri == default_uri() or not is_public(uri) else f" --tracking-uri {uri}"
    return f"{program} --parent {parent}{store}"

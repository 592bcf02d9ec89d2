"""A Hydra multirun as one MLflow parent run with a child run per job, wherever the jobs run.

The whole lifecycle of a sweep lives here:

- start (`MlflowSweep.on_multirun_start`, in the submitting process): create the parent run, or
  reopen it for `sweep.resume=<parent id or name>`, and hand its id and store to the jobs as
  Hydra overrides of `hydra.job.env_set`. Hydra builds every job's config from those overrides
  and sets them around the job, so a job gets its parent inside its own config, also where the
  environment does not reach it (a Slurm cluster with `SBATCH_EXPORT=NONE`);
- each job (`run_job`, in whatever process or host runs it): skip a config that already has a
  FINISHED child when resuming; otherwise fit, and whatever goes wrong, leave a FAILED child with
  the reason and return +inf so that the other jobs go on;
- end (`on_multirun_end`, back in the submitting process once the launcher has waited for the
  last job): write summary.csv, comparison.png, final_loss_vs_<key>.png for each numeric
  setting swept and the best run on the parent, say how to look at it, and exit 1 when any job
  failed. A sweep cut off (Ctrl-C, a launcher error) still gets the summary of what it has, and
  its parent ends KILLED.

gdfit.sweep (api.py) runs its grid in-process through the same start (`MlflowSweep.open`), jobs
(`run_job`) and end (`MlflowSweep.finish`). This module is not named sweep.py so that
`gdfit.sweep` can be that function.

Hydra builds this callback for single runs too, so MLflow is imported inside the sweep hooks
only: a plain run with a bad setting fails without paying ~1 s for it.
"""

import atexit
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from gdfit import __version__, longlived, timing
from gdfit.environment import git_state, git_tags, share_git_state
from gdfit.errors import ConfigError, GdfitError, TrackingError
from gdfit.paths import default_store_dir
from gdfit.redaction import redact

PARENT_ENV = "GDFIT_SWEEP_PARENT"  # in a job: the id of its sweep's parent run
NAME_ENV = "GDFIT_SWEEP_NAME"  # and the parent's name, which groups the jobs in the UI
# Settings that do not change what a job computes or records: a resumed sweep may name the store
# another way or print less, the run name follows from the rest, and sweep.resume is its own.
NOT_THE_FIT = ("tracking.uri", "tracking.run_name", "train.log_every", "sweep.")
MAX_FAILURES_SHOWN = 10
FINISHED = "attributes.status = 'FINISHED'"  # an MLflow search filter


class SweepFailed(GdfitError):
    """The sweep ran to its end, but some of its jobs failed (exit 1)."""


def sweeps_dir(uri: str | None) -> str:
    """Where Hydra keeps a sweep's own files (multirun.yaml, Optuna's results, submitit's job
    folders): beside the sqlite store in use, else `multirun/` in the working directory; never
    the code's checkout when the store lives elsewhere. Jobs on other hosts read their pickled
    job from here, so on a cluster it must be on a shared filesystem (or set hydra.sweep.dir)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return str(default_store_dir() / "sweeps")
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "sweeps")
    return str(Path.cwd() / "multirun")


def check_single_run(cfg: DictConfig) -> None:
    """A single run has no sweep to resume: refuse `sweep.resume` without -m."""
    if cfg.sweep.resume is not None:
        raise ConfigError("sweep.resume", "resumes a sweep: add -m and the sweep's own overrides")


def fingerprint(params: dict[str, str]) -> frozenset:
    """What identifies a job's config among a sweep's children: its logged params, less the
    settings that do not change the fit (unset ones count as absent, as older runs logged them
    as "None" and newer ones as "null")."""
    return frozenset(
        (k, v)
        for k, v in params.items()
        if not k.startswith(NOT_THE_FIT) and v not in ("None", "null")
    )


def latest_attempts(runs) -> list:
    """One entry per config of a sweep: its FINISHED runs, else its newest attempt. A resumed
    sweep's parent also holds the attempts that a later one replaced. `runs`: oldest first."""
    by_config: dict[frozenset, list] = {}
    for run in runs:
        by_config.setdefault(fingerprint(run.data.params), []).append(run)
    kept = []
    for attempts in by_config.values():
        kept += [r for r in attempts if r.info.status == "FINISHED"] or attempts[-1:]
    return sorted(kept, key=lambda r: r.info.start_time)


def run_job(cfg: DictConfig, fit: Callable[[], float], run_name: str) -> float:
    """One job of a sweep: `fit()` (which logs the child run and returns its final loss),
    unless a resumed sweep already has this config FINISHED. A failure of any kind leaves a
    FAILED child with its reason and returns +inf, which the Optuna sweeper scores as the worst
    trial; the sweep goes on and reports it at the end."""
    from gdfit import tracking

    parent = os.environ.get(PARENT_ENV)
    uri = tracking.resolve_uri(cfg.tracking.uri)
    mine = fingerprint(tracking.flat_params(cfg))
    if parent and cfg.sweep.resume is not None:
        for done in tracking.search_runs(uri, parent=parent, filter_string=FINISHED):
            if fingerprint(done.data.params) == mine:
                print(f"gdfit: {run_name}: FINISHED before as run {done.info.run_id}; skipped")
                return done.data.metrics.get("final_loss", math.inf)
    try:
        return fit()
    except Exception as error:
        reason = str(error) if isinstance(error, GdfitError) else f"{type(error).__name__}: {error}"
        print(f"gdfit: error: {run_name}: {reason}", flush=True)
        # A failure inside the run has ended it FAILED with the reason (tracking.tracked_run
        # names it on the error); one before the run existed gets a FAILED child of its own.
        if parent and not getattr(error, "run_id", None):
            try:
                tracking.record_failure(cfg, run_name, {"gdfit.version": __version__}, error)
            except Exception as unrecorded:
                print(f"gdfit: error: {run_name}: not recorded: {unrecorded}", flush=True)
        return math.inf


def _quiet_optuna() -> None:
    """Optuna announces its study at INFO through a colouring handler of its own, escape codes
    and all even into a file; keep its warnings only, coloured only on a terminal."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not sys.stderr.isatty():
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()


def _stop(error: GdfitError) -> NoReturn:
    """Hydra turns an exception raised by a callback into a warning and goes on; a sweep that
    cannot start, or whose jobs failed, ends with gdfit's one line and exit code instead."""
    print(f"gdfit: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


def _draw_figures(uri: str, jobs: list, folder: Path) -> None:
    """A sweep's figures as PNGs in `folder`: final_loss_vs_<key>.png and comparison.png. A
    figure that cannot be drawn is said and left out: the summary does not hang on it. What
    the store cannot give (the jobs' curves) still fails the caller."""
    from gdfit import plots, summary

    drawers = {
        "final_loss_vs_<key>.png": lambda: summary.versus_figures(jobs),
        "comparison.png": lambda: {"comparison.png": summary.comparison(uri, jobs)},
    }
    for what, draw in drawers.items():
        try:
            for name, figure in draw().items():
                plots.save_png(figure, folder / name)
        except TrackingError:
            raise
        except Exception as error:
            said = ": ".join([type(error).__name__, *str(error).strip().splitlines()[:1]])
            said = f"the sweep's {what} was not drawn: {redact(said)}"
            print(f"gdfit: warning: {said}", file=sys.stderr)


def _hydra_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


def _hand_to_jobs(config: DictConfig, env: dict[str, str]) -> None:
    """Add `env` to every job's `hydra.job.env_set`. Hydra composes each job from the sweep's
    `hydra.overrides.hydra` plus the job's own overrides (in this process, a worker, or a
    pickled submitit job on another host) and sets env_set around the job."""
    with read_write(config.hydra.overrides):
        for key, value in env.items():
            config.hydra.overrides.hydra.append(f"++hydra.job.env_set.{key}={_hydra_quoted(value)}")


def _writable_uri(uri: str) -> bool:
    """Whether `uri` may be written into job files: not when it carries a password or token."""
    parts = urlsplit(uri)
    return not (parts.username or parts.password or parts.query)


def _compare_command(parent: str, uri: str) -> str:
    """The gdfit-compare command for this sweep, as this shell would find it."""
    here = Path(sys.argv[0]).with_name("gdfit-compare")
    program = str(here) if here.is_file() else "gdfit-compare"
    store = "" if uri == _default_uri() or not _writable_uri(uri) else f" --tracking-uri {uri}"
    return f"{program} --parent {parent}{store}"


def _default_uri() -> str:
    from gdfit import tracking

    return tracking.resolve_uri(None)


class MlflowSweep(Callback):
    def __init__(self) -> None:
        self.uri = self.parent = self.name = self.view = None
        self.sweep_yaml = ""
        self.between: float | None = None  # perf_counter when the last job ended

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if "Optuna" in config.hydra.sweeper._target_:
            _quiet_optuna()
        try:
            self._start(config)
        except GdfitError as error:
            _stop(error)
        except Exception as error:
            _stop(TrackingError(f"cannot start the sweep's parent run: {error}"))

    def _start(self, config: DictConfig) -> None:
        from gdfit import tracking

        handed = self.open(
            tracking.resolve_uri(config.tracking.uri),
            config.tracking.experiment,
            list(config.hydra.overrides.task),
            config.hydra.sweeper._target_.rpartition(".")[2],
            config.hydra.launcher._target_.rpartition(".")[2],
            config.sweep.resume,
        )
        _hand_to_jobs(config, handed)
        self.sweep_yaml = OmegaConf.to_yaml(config)

    def open(
        self,
        uri: str,
        experiment: str,
        overrides: list[str],
        sweeper: str,
        launcher: str,
        resume: str | None = None,
    ) -> dict[str, str]:
        """Create the RUNNING parent run of a sweep over `overrides` (or reopen sweep `resume`)
        in `uri`; return the environment its jobs need to find it. `sweeper` and `launcher`
        name what runs the jobs, for the parent's tags."""
        from gdfit import tracking

        self.uri = uri
        tags = {
            "gdfit.sweep": "true",
            "gdfit.version": __version__,
            "gdfit.sweep_overrides": " ".join(overrides)[:5000],
            "gdfit.sweeper": sweeper,
            "gdfit.launcher": launcher,
        }
        git = git_state()
        share_git_state(git)  # for the jobs run in this process, until finish()
        tags |= git_tags(git)
        if resume is None:
            self.name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
            self.parent = tracking.start_parent(self.uri, experiment, self.name, tags)
            print(f"gdfit: sweep {self.name}: parent run {self.parent}", flush=True)
        else:
            self._reopen(resume, experiment, tags)
        longlived.freeze("sweep start")  # before Hydra composes every job's config to check them
        atexit.register(self._cut_off)  # Ctrl-C or a crash: the parent must not stay RUNNING
        handed = {PARENT_ENV: self.parent, NAME_ENV: self.name}
        if _writable_uri(self.uri):
            # The store the parent is in, for a job whose tracking.uri is unset or comes from
            # the environment (tracking=server); an explicit tracking.uri still comes first.
            handed["MLFLOW_TRACKING_URI"] = self.uri
        self.between = time.perf_counter()
        return handed

    def _reopen(self, ref: str, experiment: str, tags: dict[str, str]) -> None:
        from gdfit import tracking

        tracking.open_experiment(self.uri, experiment)  # a new store is made whole, not here
        try:
            found, how = tracking.find_run(self.uri, ref)
        except GdfitError as error:
            why = f"must name a sweep's parent run (its id, id prefix or name); {error}"
            raise ConfigError("sweep.resume", why) from error
        if how:
            print(f"gdfit: sweep.resume: {how}", flush=True)
        if found.data.tags.get("gdfit.sweep") != "true":
            raise ConfigError("sweep.resume", "names a run that is not a sweep's parent", ref)
        found_in = tracking.experiment_name(self.uri, found.info.experiment_id)
        if found_in != experiment:
            raise ConfigError(
                "sweep.resume",
                f"names a sweep of experiment {found_in!r}: add tracking.experiment={found_in}",
                ref,
            )
        self.parent, self.name = found.info.run_id, found.info.run_name
        resumed = int(found.data.tags.get("gdfit.resumes", "0")) + 1
        tracking.reopen_parent(self.uri, self.parent, {**tags, "gdfit.resumes": str(resumed)})
        print(f"gdfit: sweep {self.name}: resuming parent run {self.parent}", flush=True)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        # Between the previous job (or the sweep's start) and this one, Hydra composed this
        # job's config: the per-job cost scripts/bench.py reports as Hydra's.
        if self.between is not None:
            timing.add("hydra compose", time.perf_counter() - self.between)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        self.between = time.perf_counter()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.parent is None:
            return
        from gdfit import tracking

        try:
            jobs, failed = self.finish("FINISHED")
        except Exception as error:
            atexit.unregister(self._cut_off)  # said here, once; not tried again at exit
            try:
                tracking.end_if_running(self.uri, self.parent, "FAILED")
            except Exception:
                pass  # the next command on this machine that reads the store ends it (reap_lost)
            _stop(TrackingError(f"the jobs ended but the sweep's summary was not written: {error}"))
        if failed or not jobs:
            _stop(
                SweepFailed(
                    f"{len(failed)} of {len(jobs)} jobs failed" if jobs else "no job was recorded"
                )
            )

    def finish(self, status: str) -> tuple[list, list]:
        """Write the summary of the jobs so far on the parent, end it with `status`, print how
        to look at it; (jobs, failed ones), one per config, oldest first."""
        from gdfit import notes, summary, tracking, views

        share_git_state(None)  # later runs in this process ask git again
        jobs = latest_attempts(tracking.search_runs(self.uri, parent=self.parent))
        header, table = summary.rows(jobs)
        best = summary.best(jobs)
        failed = [r for r in jobs if r.info.status != "FINISHED"]
        metrics = {"best_final_loss": best.data.metrics["final_loss"]} if best else {}
        tags = {"gdfit.jobs": str(len(jobs)), "gdfit.failed_jobs": str(len(failed))}
        if best:
            tags["gdfit.best_run_id"] = best.info.run_id
        self.view = views.address(self.uri, jobs[0].info.experiment_id) if jobs else None
        tags[notes.NOTE_TAG] = notes.sweep_note(
            jobs,
            self.parent,
            swept=summary.swept_keys(jobs),
            store=notes.store_option(self.uri, _default_uri()),
            view=self.view,
            best_id=best.info.run_id if best else None,
        )[:20000]
        texts = {"summary.csv": summary.to_csv(header, table), "sweep.yaml": self.sweep_yaml}
        with tempfile.TemporaryDirectory(prefix="gdfit-sweep-") as folder:
            if jobs:
                _draw_figures(self.uri, jobs, Path(folder))
            tracking.finish_parent(
                self.uri, self.parent, metrics, tags, texts, Path(folder), status
            )
        for line in self._closing_lines(status, jobs, failed, best):
            print(f"gdfit: {line}", flush=True)
        atexit.unregister(self._cut_off)  # the parent has ended
        return jobs, failed

    def _closing_lines(self, status: str, jobs: list, failed: list, best) -> list[str]:
        from gdfit import notes

        done = "done" if status == "FINISHED" else f"ended {status}"
        head = f"sweep {self.name} {done}: {len(jobs)} jobs, {len(failed)} failed"
        if best:
            head += f"; best {best.info.run_name} final_loss {best.data.metrics['final_loss']:.8g}"
        lines = [head]
        for run in failed[:MAX_FAILURES_SHOWN]:
            reason = run.data.tags.get("gdfit.error", "stopped before it finished")
            lines.append(f"  {run.info.run_name} {run.info.status}: {reason.splitlines()[0]}")
        if len(failed) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more")
        lines.append(f"parent run {self.parent}")
        lines.append(f"compare its runs: {_compare_command(self.parent, self.uri)}")
        if self.view:
            local = self.uri.startswith("sqlite:")
            ui = f"gdfit-ui{notes.store_option(self.uri, _default_uri())}, then " if local else ""
            lines.append(f"view them: {ui}{self.view}")
        return lines

    def _cut_off(self) -> None:
        """At exit with the parent still RUNNING: summarise what the jobs left, end it KILLED."""
        from gdfit import tracking

        if self.parent is None:
            return
        try:
            self.finish("KILLED")
        except BaseException as error:  # a store gone, a second signal: do not leave it RUNNING
            why = str(error) or type(error).__name__
            why = f"the sweep's summary was not written: {redact(why)}"
            print(f"gdfit: error: {why}", file=sys.stderr)
            try:
                tracking.end_if_running(self.uri, self.parent, "KILLED")
            except Exception as ended:
                print(
                    f"gdfit: error: parent run {self.parent} could not be ended ({ended}); the "
                    "next gdfit command on this machine that reads the store ends it KILLED",
                    file=sys.stderr,
                )

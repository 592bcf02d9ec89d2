"""The story of one run, as the example tells it: prepare (data -> model -> start point) ->
fit (the loop, its curve logged as it goes) -> record (metrics, coefficients, figures, the
description). Which model, backend and rule run is looked up by name (gdfit.registry); nothing
here depends on which, nor on how the run was asked for (gdfit.cli, gdfit.api).
"""

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gdfit import backends, config, data, environment, modellog, models, notes, registry, views
from gdfit.console import Reporter, where
from gdfit.devices import resolve_device
from gdfit.errors import ConfigError, Diverged
from gdfit.redaction import public_uri, redact_data
from gdfit.results import Fit
from gdfit.runlog import (
    DIVERGED_TAG,
    FIGURES_LEFT,
    JOBS_ENV,
    PARENT_ENV,
    TrackedRun,
    run_params,
    tracked_run,
)
from gdfit.seeding import seed_everything
from gdfit.store import resolve_uri, store_option

CHUNK_ELEMENTS = 2_000_000  # ~points x steps per chunk: the host sees the curve this often
DIVERGENCE_FACTOR = 1e6  # a loss above this many times the first loss (or 1) has diverged


@dataclass
class Problem:
    """What a fit needs, prepared from the config before any run is created."""

    cfg: DictConfig
    model: Any  # a models.<name>.Model
    backend: ModuleType
    device: str  # "cpu" | "cuda"
    run_name: str
    x: np.ndarray  # (n_points,) float64
    y: np.ndarray  # (n_points,) float64, target(x)
    F: tuple  # the model's features of x, float64
    p0: np.ndarray  # (n_params,) float64 start point
    bound: float  # a loss above this has diverged


@dataclass
class Fitted:
    """What the loop returns: the parameters and the loop's own seconds."""

    params: np.ndarray  # (n_params,) float64
    seconds: float  # the loop alone, without the logging between chunks
    snapshots: dict[int, np.ndarray]  # step -> parameters after that many updates


def default_run_name(cfg: DictConfig) -> str:
    o = cfg.optimizer
    return f"{cfg.backend.name}-{o.name}-lr{o.lr:g}-seed{cfg.train.seed}"


def first_divergent(losses: np.ndarray, bound: float) -> int | None:
    """Index of the first loss that is non-finite or above `bound`, if any."""
    bad = ~np.isfinite(losses) | (losses > bound)
    return int(np.argmax(bad)) if bad.any() else None


# ---- prepare ----


def prepare(cfg: DictConfig) -> Problem:
    """Validate `cfg`, seed, and build the data, the model and its start point."""
    config.validate(cfg)
    backend = registry.load("backend", cfg.backend.name)
    device = resolve_device(cfg.device.name, backend)
    seed_everything(cfg.train.seed, torch_backend=backend.TORCH)
    with np.errstate(all="ignore"):  # overflow is reported below, by setting
        x, y = data.make_data(cfg.data)
        model = models.build(cfg.model)
        F = model.features(x)
        p0 = models.start(model, cfg.model.init, cfg.train.seed)
        check_finite(cfg, y, F)
        start_loss = float(model.loss(p0, F, y))
    if not math.isfinite(start_loss):
        if cfg.model.init != "random":
            why = "gives a loss that overflows at the start point; use smaller numbers"
            raise ConfigError("model.init", why, p0.tolist())
        key, value = _widest_end(cfg)
        raise ConfigError(
            key, "makes the loss at the start point overflow; narrow the range", value
        )
    bound = DIVERGENCE_FACTOR * max(start_loss, 1.0)
    run_name = cfg.tracking.run_name or default_run_name(cfg)
    return Problem(cfg, model, backend, device, run_name, x, y, F, p0, bound)


def check_finite(cfg: DictConfig, y: np.ndarray, F: tuple) -> None:
    """Data the backend's dtype can hold, or a ConfigError naming the setting that broke it
    (a diverging loss would otherwise take the blame)."""
    d = cfg.data
    largest = np.finfo(cfg.backend.dtype).max
    where = f"on [{d.x_min:g}, {d.x_max:g}]"  # the target's message names the range
    if not (np.isfinite(y).all() and np.abs(y).max() <= largest):
        raise ConfigError(
            "data.target", f"{d.target}(x) overflows {cfg.backend.dtype} {where}; narrow the range"
        )
    for f in F:
        if not (np.isfinite(f).all() and np.abs(f).max() <= largest):
            key, value = _widest_end(cfg)
            why = f"makes the model's features of x overflow {cfg.backend.dtype}; narrow the range"
            raise ConfigError(key, why, value)


def _widest_end(cfg: DictConfig) -> tuple[str, float]:
    """The end of the data range farther from 0: the one to blame for an overflow."""
    d = cfg.data
    return ("data.x_max", d.x_max) if abs(d.x_max) >= abs(d.x_min) else ("data.x_min", d.x_min)


# ---- fit ----


def fit(problem: Problem, on_chunk: backends.OnChunk, snapshot_steps: Iterable[int] = ()) -> Fitted:
    """Run the loop, handing each chunk to `on_chunk`; keep the parameters after each of
    `snapshot_steps` updates (0: the start point; steps past the end are ignored)."""
    cfg = problem.cfg
    wanted = {s for s in snapshot_steps if 0 <= s <= cfg.train.steps}
    snapshots = {0: problem.p0.copy()} if 0 in wanted else {}
    outside = 0.0  # seconds spent in on_chunk, kept out of the loop's time

    def watched(start: int, losses: np.ndarray, params: np.ndarray) -> None:
        nonlocal outside
        entered = time.perf_counter()
        on_chunk(start, losses, params)
        if start + len(losses) in wanted:
            snapshots[start + len(losses)] = params
        outside += time.perf_counter() - entered

    with np.errstate(all="ignore"):  # divergence is reported from the losses, not as warnings
        began = time.perf_counter()
        params = backends.fit(
            cfg.backend.name,
            problem.model,
            problem.F,
            problem.y,
            problem.p0,
            cfg.optimizer,
            steps=cfg.train.steps,
            dtype=cfg.backend.dtype,
            device=problem.device,
            chunk=max(1, min(1000, CHUNK_ELEMENTS // len(problem.x))),
            on_chunk=watched,
            ends=wanted,
        )
        seconds = time.perf_counter() - began - outside
    return Fitted(params, seconds, snapshots)


def watch(problem: Problem, run: TrackedRun, reporter: Reporter) -> backends.OnChunk:
    """The on_chunk of a tracked run: log the curve, print it, stop at divergence."""
    cfg = problem.cfg

    def on_chunk(start: int, losses: np.ndarray, params: np.ndarray) -> None:
        bad = first_divergent(losses, problem.bound)
        kept = losses if bad is None else losses[:bad]
        run.curve.add(start, kept)
        reporter.chunk(start, kept)
        if bad is not None:
            run.set_tags({DIVERGED_TAG: start + bad})
            raise Diverged(start + bad, float(losses[bad]), cfg.optimizer.lr, stable_rate(problem))

    return on_chunk


def stable_rate(problem: Problem) -> float | None:
    """The rate above which the rule diverges on this data, where theory gives one."""
    try:
        with np.errstate(all="ignore"):
            curvature = problem.model.curvature(problem.F)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return None  # too large to say: the message then leaves the bound out
    if curvature is None or not math.isfinite(curvature) or curvature <= 0:
        return None
    rule = registry.load("optimizer", problem.cfg.optimizer.name)
    return rule.stable_lr(curvature, problem.cfg.optimizer)


# ---- record ----


def frame_steps(steps: int) -> list[int]:
    """Where the fit is drawn for the image cards' slider: the start, every power of ten
    on the way, and the end (0, 10, 100, 1000, 5000 for the example)."""
    marks = [0] + [10**k for k in range(1, 12) if 10**k < steps]
    return sorted({*marks, steps})


def figures_left(cfg: DictConfig) -> str | None:
    """Why this run does not draw its own figures (tracking.figures), or None when it does:
    `auto` draws unless the run is a job of a sweep too large for pictures of every job (that
    sweep draws its best jobs' figures at its end)."""
    if cfg.tracking.figures == "none":
        return "none"
    jobs = os.environ.get(JOBS_ENV, "")
    many = jobs.isdigit() and int(jobs) > config.FIGURES_AUTO_MOST
    return FIGURES_LEFT if cfg.tracking.figures == "auto" and many else None


def record(run: TrackedRun, problem: Problem, fitted: Fitted) -> Fit:
    """Log what the fit came to: metrics, coefficients, figures; return it as a Fit."""
    cfg, model, F, y, params = problem.cfg, problem.model, problem.F, problem.y, fitted.params
    final_loss = float(model.loss(params, F, y))
    optimum = model.optimum(F, y)
    optimal_loss = None if optimum is None else float(model.loss(optimum, F, y))
    coefficients = {name: float(v) for name, v in zip(model.param_names, params, strict=True)}
    metrics = {"final_loss": final_loss}
    if optimal_loss is not None:
        gap = final_loss - optimal_loss
        metrics |= {"loss_gap": gap, "optimal_loss": optimal_loss}  # MLflow's tables: this order
        # MLflow's charts and Compare print two to four decimals, so gaps of 1e-6 all read
        # 0.00; the exponent tells runs apart. Below 1e-15 of the loss a gap is rounding.
        floor = 1e-15 * max(abs(optimal_loss), 1e-300)
        metrics["log10_loss_gap"] = round(math.log10(max(gap, floor)), 2)  # the UI's column
    metrics["log10_lr"] = math.log10(cfg.optimizer.lr)  # an axis for MLflow's charts
    metrics |= coefficients
    metrics["train_seconds"] = fitted.seconds
    metrics["steps_per_second"] = cfg.train.steps / fitted.seconds
    run.log_metrics(metrics, log_model(run, problem, params))
    run.log_dict(coefficients, "coefficients.json")
    run.curve.snapshots = fitted.snapshots
    loss_steps, losses = (a.copy() for a in run.curve.curve())
    if left := figures_left(cfg):
        run.set_tags({"gdfit.figures": left})
    else:
        from gdfit import plots  # matplotlib: ~0.3 s to import, for runs that draw

        figures, frames = plots.run_figures(
            problem.x,
            y,
            model,
            F,
            params,
            cfg.data.target,
            problem.run_name,
            (loss_steps, losses),
            optimal_loss,
            fitted.snapshots,
        )
        for name, figure in figures.items():
            run.log_figure(figure, name)
        if frames:
            run.log_images(frames, "fit")
    return Fit(
        run.run_id,
        problem.run_name,
        params,
        loss_steps,
        losses,
        final_loss,
        optimal_loss,
        cfg,
        fitted.snapshots,
    )


def log_model(run: TrackedRun, problem: Problem, params: np.ndarray) -> str | None:
    """The fit as an MLflow model (gdfit.modellog); its id, or None when tracking.log_model is
    off or the run is a sweep's job (the sweep logs its best job's at its end). A store that
    refuses it is said, and the run goes on: gdfit-register logs it later from the run."""
    cfg = problem.cfg
    if not cfg.tracking.log_model or os.environ.get(PARENT_ENV):
        return None
    given = {p.key: p.value for p in run_params(cfg, run.client.uri, problem.run_name)}
    try:
        return modellog.log(run.client, run.run_id, run.experiment_id, cfg, params, given)
    except Exception as error:
        why = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"gdfit: warning: the run's model was not logged: {why}", file=sys.stderr)
        run.set_tags({"gdfit.model": f"not logged: {why}"[:5000]})
        return None


def write_description(
    run: TrackedRun,
    problem: Problem,
    status: str,
    result: Fit | None = None,
    error: BaseException | None = None,
) -> None:
    """The run's description on its MLflow page (see gdfit.notes)."""
    cfg = problem.cfg
    text = notes.run_note(
        cfg,
        run.run_id,
        status,
        what=problem.model.what,
        rerun=store_option(resolve_uri(cfg.tracking.uri), lasting=True),
        result_line=problem.model.describe(result.coef) if result else None,
        final_loss=result.final_loss if result else None,
        optimal_loss=result.optimal_loss if result else None,
        diverged_at=error.step if isinstance(error, Diverged) else None,
        stable_lr=error.stable_lr if isinstance(error, Diverged) else None,
        error=None if error is None else (str(error).splitlines() or [repr(error)])[0][:500],
    )
    run.set_tags({notes.NOTE_TAG: text})


# ---- one tracked run ----


class Inputs:
    """What a run records about what it ran, before it fits: the config, the environment and
    git's state, as tags and as files (config.yaml, environment.json, git.diff)."""

    def __init__(self, problem: Problem, overrides: list[str] | tuple[str, ...]):
        self.cfg = problem.cfg
        self.git = environment.shared_git_state()
        self.env = environment.collect(problem.device, list(overrides), self.git)
        self.tags = {
            "gdfit.backend": self.cfg.backend.name,
            "gdfit.device": problem.device,
            "gdfit.version": environment.VERSION,
            **environment.tags(self.env),
            **environment.git_tags(self.git),
        }

    def log(self, run: TrackedRun) -> None:
        # filtered before it is YAML, which folds a long value with spaces across lines
        settings = redact_data(OmegaConf.to_container(self.cfg, resolve=True))
        run.log_text(OmegaConf.to_yaml(settings), "config.yaml")
        run.log_dict(self.env, "environment.json")
        if self.env["git"]["dirty"]:
            run.log_text(self.git["diff"], "git.diff")


def train(
    cfg: DictConfig,
    overrides: list[str] | tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    snapshot_steps: Iterable[int] | None = None,
    progress: str = "lines",
    opened: Callable[[str], None] = lambda run_id: None,
    say_where: bool = True,
) -> Fit:
    """One tracked run of the fit `cfg` describes; `overrides` (the command line's) and `tags`
    are recorded with it. `snapshot_steps`: keep the parameters after these many updates
    (default: `frame_steps`, drawn as the run's fit images). `progress`: what the console
    shows while it fits (console.PROGRESS); "lines" also prints the example's `Result:` line,
    then where the run went (unless `say_where` is False: a store about to be thrown away);
    otherwise (a sweep's job, a notebook) the caller says what it needs. `opened(run_id)` is
    told the run's id as soon as the run exists."""
    problem = prepare(cfg)
    if snapshot_steps is None:
        snapshot_steps = frame_steps(cfg.train.steps)
    inputs = Inputs(problem, overrides)
    with tracked_run(cfg, problem.run_name, inputs.tags | (tags or {}), opened) as run:
        inputs.log(run)
        run.send_files(must=False)  # what the run is, there even if the process dies
        try:
            steps, every = cfg.train.steps, cfg.train.log_every
            with Reporter(steps, every, problem.run_name, progress) as reporter:
                fitted = fit(problem, watch(problem, run, reporter), snapshot_steps)
            result = record(run, problem, fitted)
        except BaseException as error:  # the page says how it ended, then the run ends
            status = "FAILED" if isinstance(error, Exception) else "KILLED"
            try:
                write_description(run, problem, status, error=error)
            except Exception as unsaid:  # a store gone away: the error itself matters more
                error.add_note(f"(its description was not saved: {unsaid})")
            raise
        write_description(run, problem, "FINISHED", result)
    if progress == "lines":
        print("Result: " + problem.model.describe(fitted.params), flush=True)
        if say_where:
            print(where_it_went(cfg, run.run_id, run.experiment_id), file=sys.stderr, flush=True)
    if cfg.tracking.register and not os.environ.get(PARENT_ENV):  # a sweep registers its best
        from gdfit import champion

        print(f"gdfit: {champion.register(run.client.uri, run.run_id).said}", flush=True)
    return result


def where_it_went(cfg: DictConfig, run_id: str, experiment_id: str) -> str:
    store = resolve_uri(cfg.tracking.uri)
    view = views.address(store, experiment_id, run_id)
    return where(run_id, "FINISHED", public_uri(store), store_option(store), view)

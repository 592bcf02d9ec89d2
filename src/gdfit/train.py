"""`gdfit-train`: fit the model to the data by gradient descent with the chosen backend and update
rule, and record the run in MLflow.

Reads as the example's story: prepare (data -> model -> start point) -> fit (the loop, its
curve logged as it goes) -> record (metrics, coefficients, figures). Which model, backend and
rule run is looked up by name (gdfit.registry); nothing here depends on which.
"""

import math
import re
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from gdfit import (
    __version__,
    backends,
    config,
    data,
    drawer,
    environment,
    longlived,
    models,
    multirun,
    registry,
    timing,
)
from gdfit.cli import (
    fail,
    refuse_group_lists,
    refuse_mode_clash,
    reported_errors,
    version_line,
)
from gdfit.console import Reporter, job_line, where
from gdfit.devices import resolve_device
from gdfit.errors import ConfigError, Diverged, GdfitError
from gdfit.paths import conf_dir
from gdfit.seeding import seed_everything

CHUNK_ELEMENTS = 2_000_000  # ~points x steps per chunk: the host sees the curve this often
DIVERGENCE_FACTOR = 1e6  # a loss above this many times the first loss (or 1) has diverged


@dataclass
class Problem:
    """What a fit needs, prepared from the config before any run is created."""

    cfg: DictConfig
    model: object  # a models.<name>.Model
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
    params: np.ndarray  # (n_params,) float64
    seconds: float  # the loop alone, without the logging between chunks
    snapshots: dict[int, np.ndarray]  # step -> parameters after that many updates


@dataclass
class Result:
    run_id: str
    coef: np.ndarray  # (n_params,) float64, the model's param_names order
    loss_steps: np.ndarray  # (n,) every step (evenly thinned past 10^7 steps), as in loss.npz
    losses: np.ndarray  # (n,) float64, the loss before the update at each of those steps
    final_loss: float
    optimal_loss: float | None  # None for a model without a closed-form optimum
    cfg: DictConfig | None = None
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    run_name: str = ""


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


def fit(problem: Problem, on_chunk: backends.OnChunk, snapshot_steps=()) -> Fitted:
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


def watch(problem: Problem, run, reporter: Reporter) -> backends.OnChunk:
    """The on_chunk of a tracked run: log the curve, print it, stop at divergence."""
    cfg = problem.cfg

    def on_chunk(start: int, losses: np.ndarray, params: np.ndarray) -> None:
        bad = first_divergent(losses, problem.bound)
        kept = losses if bad is None else losses[:bad]
        run.curve.add(start, kept)
        reporter.chunk(start, kept)
        if bad is not None:
            run.set_tags({"gdfit.diverged_at_step": start + bad})
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
    """Where the fit is drawn for the run page's image slider: the start, every power of ten
    on the way, and the end (0, 10, 100, 1000, 5000 for the example)."""
    marks = [0] + [10**k for k in range(1, 12) if 10**k < steps]
    return sorted({*marks, steps})


def record(run, problem: Problem, fitted: Fitted) -> Result:
    """Log what the fit came to: metrics, coefficients, figures; return it as a Result."""
    model, F, y, params = problem.model, problem.F, problem.y, fitted.params
    final_loss = float(model.loss(params, F, y))
    optimum = shared_optimum(problem)
    optimal_loss = None if optimum is None else float(model.loss(optimum, F, y))
    coefficients = {name: float(v) for name, v in zip(model.param_names, params, strict=True)}
    metrics = {"final_loss": final_loss}
    if optimal_loss is not None:
        gap = final_loss - optimal_loss
        metrics |= {"optimal_loss": optimal_loss, "loss_gap": gap}
        # MLflow's charts and Compare print two to four decimals, so gaps of 1e-6 all read
        # 0.00; the exponent tells runs apart. Below 1e-15 of the loss a gap is rounding.
        floor = 1e-15 * max(abs(optimal_loss), 1e-300)
        metrics["log10_loss_gap"] = math.log10(max(gap, floor))
    metrics["log10_lr"] = math.log10(problem.cfg.optimizer.lr)  # an axis for MLflow's charts
    metrics |= coefficients
    metrics["train_seconds"] = fitted.seconds
    metrics["steps_per_second"] = problem.cfg.train.steps / fitted.seconds
    run.log_metrics(metrics)
    run.log_dict(coefficients, "coefficients.json")
    loss_steps, losses = (a.copy() for a in run.curve.curve())
    with timing.section("figures"):
        drawing = drawer.draw(
            x=problem.x,
            y=y,
            fitted=model.predict(params, F),
            target=problem.cfg.data.target,
            run_name=problem.run_name,
            formula=model.describe(params, 4),
            steps=loss_steps,
            losses=losses,
            optimal_loss=optimal_loss,
            snapshots=[(s, model.predict(p, F)) for s, p in sorted(fitted.snapshots.items())],
        )
    run.curve.flush(wait=False)  # the chart's points go to the store while the drawer draws
    with timing.section("figures"):
        figures = drawing()
    for name in ("fit.png", "loss.png"):
        run.log_png(figures[name], name)
    if figures["frames"]:
        run.log_images(figures["frames"], "fit")
    return Result(
        run.run_id,
        params,
        loss_steps,
        losses,
        final_loss,
        optimal_loss,
        problem.cfg,
        fitted.snapshots,
        problem.run_name,
    )


_optima: dict[str, np.ndarray | None] = {}  # the model and data settings -> their optimum


def shared_optimum(problem: Problem) -> np.ndarray | None:
    """The model's least-squares optimum on the problem's data, solved once per process for
    each model and data setting (the jobs of a sweep over rates or rules share it)."""
    cfg = problem.cfg
    key = OmegaConf.to_yaml(cfg.model, resolve=True) + OmegaConf.to_yaml(cfg.data, resolve=True)
    if key not in _optima:
        _optima[key] = problem.model.optimum(problem.F, problem.y)
    found = _optima[key]
    return None if found is None else found.copy()


def describe(run, problem: Problem, status: str, result=None, error=None) -> None:
    """The run's description on its MLflow page (see gdfit.notes)."""
    from gdfit import notes, tracking

    cfg = problem.cfg
    store = tracking.resolve_uri(cfg.tracking.uri)
    text = notes.run_note(
        cfg,
        run.run_id,
        status,
        rerun=notes.store_option(store, tracking.resolve_uri(None)),
        result_line=problem.model.describe(result.coef) if result else None,
        final_loss=result.final_loss if result else None,
        optimal_loss=result.optimal_loss if result else None,
        diverged_at=getattr(error, "step", None) if isinstance(error, Diverged) else None,
        error=None if error is None else (str(error).splitlines() or [repr(error)])[0][:500],
    )
    run.set_tags({notes.NOTE_TAG: text})


# ---- one tracked run ----


def train(
    cfg: DictConfig,
    overrides: list[str] = (),
    tags: dict[str, str] | None = None,
    snapshot_steps=None,
    progress: str = "lines",
) -> Result:
    """One tracked run of the fit `cfg` describes; `overrides` (the command line's) and `tags`
    are recorded with it. `snapshot_steps`: keep the parameters after these many updates
    (default: `frame_steps`, drawn as the run's fit images). `progress`: what the console
    shows while it fits (console.PROGRESS); "lines" also prints the example's `Result:` line,
    then where the run went; otherwise (a sweep's job, a notebook) the caller says what it
    needs."""
    problem = prepare(cfg)
    if snapshot_steps is None:
        snapshot_steps = frame_steps(cfg.train.steps)
    # The drawer (gdfit-train's) builds the figures while the run starts and fits.
    drawer.warm(
        problem.x,
        problem.y,
        cfg.data.target,
        problem.run_name,
        problem.model.describe(problem.p0, 4),
        cfg.train.steps,
    )
    # Imported once the settings are known to be good: MLflow takes ~1 s to import, which a
    # mistyped setting should not have to wait for. matplotlib too, unless the drawer draws.
    from gdfit import tracking

    if not drawer.running():
        from gdfit import plots  # noqa: F401 (imported before the freeze below)

    git = environment.shared_git_state()
    env = environment.describe(problem.device, list(overrides), git)
    tags = {
        "gdfit.backend": cfg.backend.name,
        "gdfit.device": problem.device,
        "gdfit.version": __version__,
        **environment.tags(env),
        **environment.git_tags(git),
        **(tags or {}),
    }
    run_name = problem.run_name
    with tracking.tracked_run(cfg, run_name, tags) as run:
        longlived.freeze("first run")  # MLflow, matplotlib, the store: out of the GC's way
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        run.log_dict(env, "environment.json")
        if env["git"]["dirty"]:
            run.log_text(git["diff"], "git.diff")
        run.send_files(must=False)  # what the run is, there even if the process dies
        try:
            with Reporter(cfg.train.steps, cfg.train.log_every, run_name, progress) as reporter:
                fitted = fit(problem, watch(problem, run, reporter), snapshot_steps)
            timing.add("fit (the loop)", fitted.seconds)
            result = record(run, problem, fitted)
        except BaseException as error:  # the page says how it ended, then the run ends
            status = "FAILED" if isinstance(error, Exception) else "KILLED"
            try:
                describe(run, problem, status, error=error)
            except Exception as unsaid:  # a store gone away: the error itself matters more
                error.add_note(f"(its description was not saved: {unsaid})")
            raise
        describe(run, problem, "FINISHED", result)
    timing.report(run_id=run.run_id, drawer=drawer.running())

    if progress == "lines":
        print("Result: " + problem.model.describe(fitted.params), flush=True)
        print(where_it_went(cfg, run.run_id, run.experiment_id), file=sys.stderr, flush=True)
    return result


def where_it_went(cfg: DictConfig, run_id: str, experiment_id: str) -> str:
    from gdfit import notes, tracking, views

    store = tracking.resolve_uri(cfg.tracking.uri)
    option = notes.store_option(store, tracking.resolve_uri(None))
    view = views.address(store, experiment_id, run_id)
    return where(run_id, "FINISHED", notes.shown_uri(store), option, view)


config.register()
# Hydra's flags that print and exit, and how they may be written: `--cfg job`, `--cfg=job`,
# `-c job`, `-cjob`; and the launchers whose jobs run in processes of their own
PRINT_AND_EXIT = ("--help", "-h", "--hydra-help", "--cfg", "--info", "-i", "--shell-completion")
PRINTING = re.compile(r"(?:" + "|".join(PRINT_AND_EXIT) + r")(?:=.*)?|-c(?:job|hydra|all)?|-sc.*")
ELSEWHERE = re.compile(r"hydra/launcher=(?!basic$).*")


def draws_here(args: list[str]) -> bool:
    """Whether this command runs jobs whose figures a drawer of its own should draw: not when
    it only prints (--help, --cfg ...), nor when a launcher runs them elsewhere (joblib's
    workers, Slurm)."""
    return not any(PRINTING.fullmatch(a) or ELSEWHERE.fullmatch(a) for a in args)


_hydra_began: float | None = None  # when main() handed the command line to Hydra


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """Hands the composed config to `api.run`. A failed single run exits with its one-line
    error; a sweep's job goes through `multirun.run_job` (resume; a failed job leaves a FAILED
    child and returns +inf, what the Optuna sweeper needs, so that the other jobs go on)."""
    from gdfit import api

    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode.name == "MULTIRUN"
    if not sweeping and _hydra_began is not None:
        timing.add("hydra compose", time.perf_counter() - _hydra_began)
    # A sweep's job prints one line, unless the user asked for its loss lines.
    lines = not sweeping or any(o.startswith("train.log_every=") for o in overrides)

    def run() -> float:
        config.check_composed(cfg, hydra_cfg.runtime.choices)
        result = api.run(cfg, overrides=overrides, progress="lines" if lines else "none")
        if not lines:
            print(job_line(result), flush=True)
        return result.final_loss

    if sweeping:
        return multirun.run_job(cfg, run, cfg.tracking.run_name or default_run_name(cfg))
    try:
        multirun.check_single_run(cfg)
        return run()
    except GdfitError as error:
        fail(error)


def main() -> None:
    """Console entry point: `gdfit-train [overrides]`."""
    args = sys.argv[1:]
    if "--version" in args:
        print(version_line())
        return
    with reported_errors():
        refuse_mode_clash(args)
        groups = {p.name: p for p in conf_dir().iterdir() if p.is_dir()}
        refuse_group_lists([a for a in args if "=" in a and not a.startswith("-")], groups)
        global _hydra_began
        _hydra_began = time.perf_counter()
        longlived.own_process()
        if draws_here(args):
            drawer.start()
        hydra_main()


if __name__ == "__main__":
    main()

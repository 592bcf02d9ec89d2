"""gdfit from Python: what `gdfit-train`, `gdfit-rerun`, `gdfit-compare` and notebooks call.

    import gdfit
    tensor = gdfit.fit(backend="tensor", lr=2e-6)   # one tracked run: a results.Fit
    lrs = gdfit.sweep(lr=[5e-7, 1e-6, 2e-6])        # a parent run, a child per job: results.Runs
    gdfit.runs(experiment="gdfit", filter="params.`backend.name` = 'tensor'")  # results.Runs

Settings are given as on the command line, as Hydra override strings ("backend=tensor",
"optimizer.lr=2e-6"), and/or as keywords: a group (`backend=`, `optimizer=`, `model=`,
`device=`, `tracking=`) chooses its option; a short name from KEYWORDS stands for its dotted key
(`lr=2e-6` is `optimizer.lr=2e-6`); any dotted key goes as `**{"optimizer.momentum": 0.5}`.
Strings come first, keywords after them, so a keyword wins over a string for the same key.
A bad setting raises gdfit.errors.ConfigError before any run is created; its message is the
line gdfit-train prints after "gdfit: error: ".

Underneath: `compose(*overrides)`, the checked config, which gdfit-rerun calls too.
"""

import dataclasses
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gdfit import batched as batching
from gdfit import config, models, registry, train
from gdfit.config import hydra_value, refuse_group_lists
from gdfit.console import PROGRESS
from gdfit.errors import ConfigError, GdfitError, UsageError, hydra_message
from gdfit.jobs import compose_many, grid
from gdfit.paths import conf_dir
from gdfit.redaction import redact_data
from gdfit.results import Fit, Runs

__all__ = ["KEYWORDS", "Fit", "Runs", "compose", "fit", "runs", "sweep"]

# Short keywords and the settings they stand for. Groups (backend, optimizer, model, device,
# tracking) are keywords under their own names. `experiment` is the MLflow experiment, as in
# gdfit.runs(experiment=...); conf/experiment/'s presets are chosen with "experiment=<preset>".
KEYWORDS = {
    "lr": "optimizer.lr",
    "steps": "train.steps",
    "seed": "train.seed",
    "log_every": "train.log_every",
    "dtype": "backend.dtype",
    "n_points": "data.n_points",
    "x_min": "data.x_min",
    "x_max": "data.x_max",
    "target": "data.target",
    "degree": "model.degree",
    "init": "model.init",
    "experiment": "tracking.experiment",
    "run_name": "tracking.run_name",
    "tracking_uri": "tracking.uri",
    "curve_points": "tracking.curve_points",
}
GROUPS = (*config.CHOSEN_BY_NAME, "tracking")


# ---- settings: override strings and keywords -> the config a run uses ----


def compose(*overrides: str) -> DictConfig:
    """The config `gdfit-train <overrides>` would run, composed by Hydra from conf/ and checked
    as the command checks it; ConfigError for a bad setting, in the command's words."""
    return _checked(_with_hydra(overrides))


def _with_hydra(overrides) -> DictConfig:
    """The composed config with its `hydra` node (mode, sweeper), not yet checked."""
    config.register()
    groups = {p.name: p for p in conf_dir().iterdir() if p.is_dir()}
    refuse_group_lists(list(overrides), groups)
    try:
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return hydra_compose("config", list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError.from_line(hydra_message(error)) from error


def _checked(cfg: DictConfig) -> DictConfig:
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return _checked_task(cfg, {"hydra": {"runtime": {"choices": choices}}})


def _checked_task(cfg: DictConfig, composed: Any) -> DictConfig:
    """`cfg` (without its hydra node) checked as gdfit-train checks it; `composed`: a config
    of its shape with the hydra node (gdfit.jobs.compose_many)."""
    config.check_composed(cfg, composed["hydra"]["runtime"]["choices"])
    config.validate(cfg)
    models.given_start(models.build(cfg.model), cfg.model.init)  # train.prepare checks it too
    return cfg


def _run_batched(cfgs: list[DictConfig], jobs: list[list[str]], memory_mb: float) -> None:
    """The jobs of `cfgs` that can share a program, fitted group by group (gdfit.batched)."""
    groups, _ = batching.plan(cfgs)
    for group in groups:
        batching.run([cfgs[i] for i in group], [jobs[i] for i in group], memory_mb)


def _refuse_hydra_settings(strings: list[str]) -> None:
    """hydra.* and hydra/... say how gdfit-train launches its jobs; the API runs them here."""
    for line in strings:
        key = line.partition("=")[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise ConfigError(
                key,
                "sets how gdfit-train runs its jobs; gdfit.fit and gdfit.sweep run in this "
                "process: drop it, or run gdfit-train -m",
                line,
            )


def _preset_sweep(cfg: DictConfig) -> str | None:
    """The preset (`experiment=compare_backends`, `hparams_search=lr_optuna`) that makes `cfg`
    a sweep of several runs, or None."""
    if cfg.hydra.mode != RunMode.MULTIRUN:
        return None
    choices = cfg.hydra.runtime.choices
    found = [f"{g}={choices[g]}" for g in ("experiment", "hparams_search") if choices.get(g)]
    return found[0] if found else "hydra.mode=MULTIRUN"


def key_of(name: str) -> str:
    """The dotted key (or group) a keyword stands for."""
    if "." in name or name in GROUPS:
        return name
    if name in KEYWORDS:
        return KEYWORDS[name]
    found = sorted(k for k in _all_keys() if k.rpartition(".")[2] == name)
    if found:
        how = f"did you mean {' or '.join(found)}? Pass it as **{{'{found[0]}': ...}}"
    else:
        how = f"the keywords are {', '.join([*GROUPS, *KEYWORDS])}, or any dotted key"
    raise ConfigError(name, f"not a setting keyword; {how}")


def _all_keys() -> set[str]:
    """Every dotted key of every option's schema."""
    keys = set()
    for group in (f.name for f in dataclasses.fields(config.Config)):
        if group in registry.GROUPS:
            schemas = [config.schema(group, option) for option in registry.names(group)]
        else:
            schemas = [type(getattr(config.Config(), group))]
        for schema in schemas:
            keys |= {f"{group}.{f.name}" for f in dataclasses.fields(schema)}
    return keys


def override_strings(strings: Iterable[str], settings: dict, grid: bool = False) -> list[str]:
    """Override strings for `strings` followed by the keyword `settings`. With `grid`, a list
    is the values to sweep (`lr=[1e-6, 2e-6]` -> `optimizer.lr=1e-06,2e-06`), as -m writes it;
    otherwise it is one value (`init=[0.1, 0.2, 0.3, 0.4]`)."""
    out = []
    for s in strings:
        if not isinstance(s, str):
            raise TypeError(f"settings are override strings such as 'backend=tensor', not {s!r}")
        out.append(s)
    for name, value in settings.items():
        key = key_of(name)
        if grid and isinstance(value, list):
            if not value:
                raise ConfigError(key, "has an empty list of values to sweep")
            out.append(f"{key}=" + ",".join(hydra_value(v) for v in value))
        else:
            out.append(f"{key}={hydra_value(value)}")
    return out


def _check_progress(progress: str) -> None:
    if progress not in PROGRESS:
        raise ConfigError("progress", f"must be one of {', '.join(PROGRESS)}", progress)


# ---- runs ----


def fit(*settings: str, progress: str = "bar", **keywords) -> Fit:
    """Fit once and log the run, as `gdfit-train <settings>` does: the same config, the same
    code, the same MLflow run (params, metrics, tags, artifacts), so gdfit-rerun reruns it.

    `progress`: "bar" (a progress bar, the default), "lines" (the example's `<step> <loss>`
    lines and its `Result:` line, as gdfit-train prints them) or "none".
    Raises ConfigError for a bad setting, before any run exists (also for a preset that is a
    sweep, "experiment=compare_backends": gdfit.sweep runs those); a diverged or failed run
    raises its GdfitError (the run is logged FAILED).
    """
    from gdfit import sweeps

    _check_progress(progress)
    strings = override_strings(settings, keywords)
    _refuse_hydra_settings(strings)
    full = _with_hydra(strings)
    if preset := _preset_sweep(full):
        key, _, name = preset.partition("=")
        raise ConfigError(key, f"{name} is a sweep of several runs; run it with gdfit.sweep")
    cfg = _checked(full)
    sweeps.check_single_run(cfg)
    return train.train(cfg, overrides=strings, progress=progress)


def sweep(
    *settings: str,
    progress: str = "bar",
    batched: bool = False,
    memory_mb: float = batching.MEMORY_MB,
    **keywords,
) -> Runs:
    """Run every combination of the values given as lists, as `gdfit-train -m` does: one MLflow
    parent run with a child run per job, summarised on the parent as -m's is (its description,
    summary.csv, comparison.png, final_loss_vs_<setting>.png, best_final_loss).

        gdfit.sweep(backend=["numpy", "tensor"], lr=[1e-6, 2e-6])   # 4 jobs
        gdfit.sweep("backend=numpy,tensor", "optimizer.lr=1e-6,2e-6")   # the same, as -m

    A list holds the values to sweep; give a list-valued setting (`init`, `betas`) as a tuple.
    The jobs run one after the other in this process, in -m's order, each printing its bar
    and then its line (`progress="lines"`: its loss lines instead). Every job's settings are
    checked before the parent is created (ConfigError). A job that fails (a diverged one)
    says why, is listed FAILED, and the others go on; "sweep.resume=<parent>" resumes a sweep
    as -m does. A preset that is a sweep ("experiment=compare_backends") runs its jobs too;
    Optuna's search (hparams_search=...) and hydra/ launchers stay with gdfit-train.
    `batched=True` fits the jobs that can share one program together, as gdfit-train's
    `hydra/launcher=batched` does (each still its own child run; one line per job, no bar),
    within `memory_mb` per program as its `hydra.launcher.memory_mb`.
    Returns the jobs as Runs, oldest first.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gdfit import sweeps
    from gdfit.console import job_line
    from gdfit.store import resolve_uri

    _check_progress(progress)
    strings = override_strings(settings, keywords, grid=True)
    _refuse_hydra_settings(strings)
    try:
        parsed = OverridesParser.create().parse_overrides(strings)
        # A preset's own sweep (experiment=compare_backends) comes first, as -m reads it.
        base = _with_hydra([o.input_line for o in parsed if not o.is_sweep_override()])
        if not base.hydra.sweeper._target_.endswith(".BasicSweeper"):
            preset = _preset_sweep(base) or "hydra/sweeper"
            key, _, name = preset.partition("=")
            raise ConfigError(
                key, f"{name} is a search, not a grid of runs; run it with gdfit-train {preset}"
            )
        params = base.hydra.sweeper.get("params") or {}
        jobs = grid([f"{k}={v}" for k, v in params.items()] + strings)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError.from_line(hydra_message(error)) from error
    composed = compose_many(jobs, _with_hydra)
    cfgs = [_checked_task(task, shape) for task, shape in composed]
    stores = {(resolve_uri(c.tracking.uri), c.tracking.experiment) for c in cfgs}
    if len(stores) > 1:
        raise ConfigError("tracking", "one sweep logs to one store and experiment; sweep each")
    ((uri, experiment),) = stores
    lifecycle = sweeps.Sweep()
    lifecycle.sweep_yaml = OmegaConf.to_yaml(redact_data({"gdfit.sweep": strings, "jobs": jobs}))
    handed = lifecycle.open(
        uri, experiment, strings, "BasicSweeper", "gdfit.sweep", len(jobs), cfgs[0].sweep.resume
    )
    status = "FAILED"
    try:
        with _environment(handed):  # where each job's run finds its parent, as -m's jobs do
            if batched:
                _run_batched(cfgs, jobs, memory_mb)
            for job, cfg in zip(jobs, cfgs, strict=True):
                if batched and batching.why_alone(cfg) is None:
                    continue

                def fit_one(opened: Any, job: list[str] = job, cfg: DictConfig = cfg) -> float:
                    result = train.train(cfg, overrides=job, progress=progress, opened=opened)
                    if progress != "lines":
                        print(job_line(result), flush=True)
                    return result.final_loss

                name = cfg.tracking.run_name or train.default_run_name(cfg)
                sweeps.run_job(cfg, fit_one, name)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        done, _ = lifecycle.finish(status)
    return Runs(uri, done, parent_id=lifecycle.parent)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ for the block, then what was there before."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- reading runs back ----


def runs(
    *refs,
    parent: str | None = None,
    experiment: str | None = None,
    filter: str = "",
    tracking_uri: str | None = None,
) -> Runs:
    """Runs read back from MLflow, as gdfit-compare selects them: the runs named in `refs`
    (Fit results, run ids, id prefixes or run names; a sweep's parent stands for its jobs), the
    jobs of sweep `parent` (its id, id prefix or name), or the runs of `experiment` (default
    "gdfit"; sweep parents left out), narrowed by an MLflow search `filter`. `tracking_uri`
    defaults as gdfit-train's does. An unknown run or experiment raises UsageError.
    """
    from gdfit import readback as stored
    from gdfit.store import resolve_uri

    if sum([bool(refs), parent is not None, experiment is not None]) > 1:
        raise UsageError("name runs, or give parent= or experiment=, not several")
    if refs and filter:
        raise UsageError("filter= goes with parent= or experiment=, not with runs named directly")
    if not refs and parent is None and experiment is None:
        experiment = "gdfit"
    uri = resolve_uri(tracking_uri, "tracking_uri")
    named = [r.run_id if isinstance(r, Fit) else str(r) for r in refs]
    try:
        found, parent_id = stored.select(
            uri, named, parent, experiment, filter, say=lambda how: print(f"gdfit: {how}")
        )
    except GdfitError:
        raise
    except Exception as error:  # a bad filter, an unreachable store
        raise GdfitError(f"cannot read runs from {uri}: {str(error).splitlines()[0]}") from error
    return Runs(uri, found, parent_id=parent_id)

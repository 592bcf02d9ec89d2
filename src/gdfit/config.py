"""Typed schema of every gdfit setting, registered with Hydra's ConfigStore.

The YAML files under `conf/` pick values; these dataclasses say which keys exist and of what
type, so a misspelled key or a wrong type fails when Hydra composes the config. A model, backend
or update rule whose settings go beyond its group's dataclass below subclasses it as `Settings`
in its own module; `register` files every option's schema under `schema/<group>/<name>`, out
of the user's choices, and each `conf/<group>/<name>.yaml` extends its own.

`check_composed` refuses what composing lets through (appended keys no schema has, a group's
`name` overridden instead of the group chosen); `validate` checks what a type cannot (ranges,
lengths, combinations) before any run is created.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from gdfit import registry
from gdfit.devices import DEVICES
from gdfit.errors import ConfigError, nearest
from gdfit.paths import sweeps_dir

MAX_SEED = 2**32 - 1
FIGURES = ("auto", "all", "none")
FIGURES_AUTO_MOST = 64  # tracking.figures=auto: a sweep of more jobs draws its best runs only
FIGURES_AUTO_BEST = 10
BYTES_PER_POINT = 16 * 8
DTYPES = ("float32", "float64")


@dataclass
class BackendConfig:
    name: str = MISSING  # a module of gdfit.backends: which implementation runs the fit
    dtype: str = "float64"  # float64 | float32: precision of data, coefficients and loss


@dataclass
class OptimizerConfig:
    name: str = MISSING  # a module of gdfit.optimizers: the update rule
    lr: float = 1e-6  # learning rate, > 0; the loss is a *sum* over points, hence the tiny rate


@dataclass
class ModelConfig:
    name: str = MISSING  # a module of gdfit.models: the function of x whose parameters are fitted
    init: Any = "random"  # "random" (standard normal, seeded) or a list of one number per parameter


@dataclass
class DeviceConfig:
    name: str = "cpu"  # cpu | cuda | auto (cuda when available, else cpu)


@dataclass
class DataConfig:
    n_points: int = 2000  # evenly spaced sample points, at least one per model parameter
    x_min: float = -math.pi  # left end of the interval (inclusive)
    x_max: float = math.pi  # right end of the interval (inclusive), > x_min
    target: str = "sin"  # the function being fitted: a key of gdfit.data.TARGETS


@dataclass
class TrainConfig:
    steps: int = 5000  # gradient-descent updates, >= 1
    log_every: int = 100  # console cadence in steps, >= 1
    seed: int = 0  # seeds the random initial coefficients


@dataclass
class TrackingConfig:
    uri: str | None = None  # MLflow tracking URI; null: $MLFLOW_TRACKING_URI, else mlruns/
    experiment: str = "gdfit"  # MLflow experiment name
    run_name: str | None = None  # null: <backend>-<optimizer>-lr<lr>-seed<seed>
    curve_points: int = 500  # most `loss` metric points (>= 2), evenly spaced; loss.npz: all
    # fit.png, loss.png and the fit images of each run: all | none | auto (every run of a
    # single run or of a sweep up to FIGURES_AUTO_MOST jobs; above, the sweep's best
    # FIGURES_AUTO_BEST runs, drawn at its end from what the store holds)
    figures: str = "auto"
    # the fit as an MLflow model (gdfit.fitted) with its run; a sweep: its best run's, at its end
    log_model: bool = True
    # at the end, register that model as a new version of gdfit-<model>; the alias champion
    # moves to it when it beats the champion's final_loss on the same data (gdfit-register)
    register: bool = False


@dataclass
class SweepConfig:
    resume: str | None = None  # with -m: the parent run (id or name) of a sweep to finish


@dataclass
class Config:
    backend: BackendConfig = field(default_factory=BackendConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# Groups whose `name` leaf is the option chosen (`backend=tensor` sets backend.name=tensor).
CHOSEN_BY_NAME = (*registry.GROUPS, "device")


def schema(group: str, name: str) -> type:
    """The dataclass of option `name` of `group`: its module's `Settings`, else the group's."""
    return getattr(registry.load(group, name), "Settings", type(getattr(Config(), group)))


def register() -> None:
    """Make the schemas known to Hydra: `base_config` (see conf/config.yaml) and one schema per
    option, `schema/<group>/<name>`, that conf/<group>/<name>.yaml extends."""
    if not OmegaConf.has_resolver("gdfit_sweeps"):  # used by hydra.sweep.dir in config.yaml
        # cached: a job recomposed elsewhere (a Slurm node without the sweep's environment)
        # gets the sweep's folder through Hydra's copy of the cache, as it does ${now:...}
        OmegaConf.register_new_resolver("gdfit_sweeps", sweeps_dir, use_cache=True)
    # conf/hydra/launcher/submitit_*.yaml give the submitit launchers gdfit's defaults under the
    # plugin's own names, which Hydra 1.3 types with the plugin's schema but warns about.
    warnings.filterwarnings("ignore", r"\s*'hydra/launcher/submitit_\w+' is validated against")
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for group in registry.GROUPS:
        for name in registry.names(group):
            store.store(group=f"schema/{group}", name=name, node=schema(group, name))


# ---- after composing: what Hydra lets through ----


def check_composed(cfg: DictConfig, choices: Mapping[str, Any]) -> None:
    """Refuse keys that no schema of the chosen options has (`+train.stpes=100`,
    `+optimizer.momentum=0.5` with sgd) and a group's name set apart from the group chosen
    (`backend.name=tensor` keeps numpy's float64: `backend=tensor` is meant). `choices`: Hydra's
    `runtime.choices`, group -> option."""
    _unknown_keys(cfg, "")
    for group in CHOSEN_BY_NAME:
        name, chosen = cfg[group].name, choices.get(group)
        if chosen is not None and name != chosen and _is_option(group, name):
            raise ConfigError(
                f"{group}.name",
                f"choose the option with {group}={name}: {group}.name={name} only renames "
                f"{group}={chosen}, whose settings would stay",
            )


def _is_option(group: str, name: str) -> bool:
    return name in (registry.names(group) if group in registry.GROUPS else DEVICES)


def _unknown_keys(node: DictConfig, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(OmegaConf.get_type(node))]  # type: ignore[arg-type]
    for key, value in node.items_ex(resolve=False):
        key = str(key)
        if key not in known:
            raise ConfigError(f"{prefix}{key}", _unknown_key_hint(node, prefix, key, known))
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(value)):
            _unknown_keys(value, f"{prefix}{key}.")


def _unknown_key_hint(node: DictConfig, prefix: str, key: str, known: list[str]) -> str:
    group = prefix.rstrip(".")
    if group in registry.GROUPS:
        fields = {
            n: {f.name for f in dataclasses.fields(schema(group, n))} for n in registry.names(group)
        }
        owners = [f"{group}={n}" for n, names in fields.items() if key in names]
        if owners:
            have = "has" if len(owners) == 1 else "have"
            return f"not a setting of {group}={node.name}; {' and '.join(owners)} {have} it"
    hint = nearest(f"{prefix}{key}", OmegaConf.get_type(node))  # as Hydra's own errors get
    return f"no such setting; {hint or f'{key!r} is not one of ' + ', '.join(known)}"


# ---- before a run: what a type cannot say ----


def _one_of(key: str, value: str, options) -> None:
    if value not in options:
        raise ConfigError(key, f"must be one of {', '.join(options)}", value)


def _finite(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(key, "must be a finite number", value)


def validate(cfg: DictConfig) -> None:
    """Check what the types cannot; raise ConfigError on the first bad setting."""
    from gdfit.data import TARGETS

    chosen = {}
    for group in registry.GROUPS:
        _one_of(f"{group}.name", cfg[group].name, registry.names(group))
        chosen[group] = registry.load(group, cfg[group].name)
    _one_of("backend.dtype", cfg.backend.dtype, DTYPES)
    _one_of("device.name", cfg.device.name, DEVICES)
    _one_of("data.target", cfg.data.target, tuple(TARGETS))
    _check_combination(cfg, chosen["model"], chosen["backend"])
    lr = cfg.optimizer.lr
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError("optimizer.lr", "must be a positive finite number", lr)
    for module in chosen.values():  # each option's own settings (momentum, betas, degree...)
        if hasattr(module, "check"):
            module.check(cfg)
    if cfg.train.steps < 1:
        raise ConfigError("train.steps", "must be >= 1", cfg.train.steps)
    if cfg.train.log_every < 1:
        raise ConfigError("train.log_every", "must be >= 1", cfg.train.log_every)
    if not 0 <= cfg.train.seed <= MAX_SEED:  # what numpy's and torch's generators accept
        raise ConfigError("train.seed", f"must be between 0 and {MAX_SEED}", cfg.train.seed)
    _fits_in_memory(cfg.data.n_points)
    check_experiment_name(cfg.tracking.experiment)
    _one_of("tracking.figures", cfg.tracking.figures, FIGURES)
    _finite("data.x_min", cfg.data.x_min)
    _finite("data.x_max", cfg.data.x_max)
    if not cfg.data.x_min < cfg.data.x_max:
        raise ConfigError(
            "data.x_min", f"must be less than data.x_max = {cfg.data.x_max}", cfg.data.x_min
        )
    if cfg.tracking.curve_points < 2:
        raise ConfigError("tracking.curve_points", "must be >= 2", cfg.tracking.curve_points)


def check_experiment_name(name: str, key: str = "tracking.experiment") -> None:
    """An MLflow experiment name gdfit can store and show: 1 to 200 printable characters."""
    if not name:
        raise ConfigError(key, "must be a non-empty name")
    if len(name) > 200 or not name.isprintable():
        raise ConfigError(key, "must be at most 200 printable characters", name)


def _fits_in_memory(n_points: int) -> None:
    """Refuse a data size whose arrays could not be allocated, before allocating them: x, y,
    the features and their copies take ~16 float64 numbers a point for a cubic."""
    if n_points < 1:
        raise ConfigError("data.n_points", "must be >= 1", n_points)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    most = total // (2 * BYTES_PER_POINT)  # leave half the memory to the rest
    if n_points > most:
        raise ConfigError(
            "data.n_points",
            f"needs ~{n_points * BYTES_PER_POINT / 2**30:,.0f} GiB; this machine's "
            f"{total / 2**30:.0f} GiB of memory holds at most ~{most:.2g} points",
            n_points,
        )


def _check_combination(cfg: DictConfig, model, backend) -> None:
    """The backend computes gradients the model supports, on a device it runs on."""
    if backend.GRADIENT not in model.GRADIENTS:
        able = [n for n in registry.names("backend") if _backend(n).GRADIENT in model.GRADIENTS]
        raise ConfigError(
            "backend.name",
            f"backend={cfg.backend.name} cannot fit model={cfg.model.name}; "
            f"choose {' or '.join(f'backend={n}' for n in able)}",
        )
    if cfg.device.name != "auto" and cfg.device.name not in backend.DEVICES:
        able = [n for n in registry.names("backend") if cfg.device.name in _backend(n).DEVICES]
        raise ConfigError(
            "device.name",
            f"{cfg.device.name} needs {' or '.join(f'backend={n}' for n in able)} "
            f"({cfg.backend.name} runs on {', '.join(backend.DEVICES)})",
        )


def _backend(name: str):
    return registry.load("backend", name)


# ---- the override grammar: what the commands and the API write for Hydra ----


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar: numbers as Python writes them, lists and tuples as
    [a,b], None as null, a plain word bare and any other string quoted (`${` escaped, so that
    Hydra never resolves what was meant as text)."""
    if hasattr(value, "tolist"):  # a numpy array or number
        value = value.tolist()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _NOT_STRINGS:
        return text
    # Hydra reads backslashes as escapes only before a quote (the closing one too), OmegaConf
    # only before ${: those runs are doubled, any other backslash stands for itself.
    escaped = re.sub(r"\\+(?='|$|\$\{)", lambda m: m[0] * 2, text)
    escaped = escaped.replace("'", "\\'").replace("${", "\\${")
    return f"'{escaped}'"


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")  # read by Hydra as this very string
_NOT_STRINGS = {"null", "true", "false", "inf", "nan"}  # bare, Hydra reads these as values


def refuse_group_lists(overrides: list[str], groups: Mapping[str, Path]) -> None:
    """`backend=[numpy,tensor]` would merge both options into one run and `optimizer=null`
    would leave the group empty; a group takes a single option, so say which there are and
    how to run each. `groups`: group name -> its folder of options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except Exception:  # not an override, or malformed: Hydra reports it in its own words
            continue
        if o.key_or_group in groups and o.value() is None and not o.is_delete():
            options = sorted(p.stem for p in groups[o.key_or_group].glob("*.yaml"))
            raise ConfigError(
                o.key_or_group, f"needs an option: one of {', '.join(options)}", o.input_line
            )
        value = o.value()
        if o.key_or_group in groups and isinstance(value, list):
            names = ",".join(str(v) for v in value)
            raise ConfigError(
                o.key_or_group,
                f"takes one option, not a list; to run each, sweep: -m {o.key_or_group}={names}",
                o.input_line,
            )

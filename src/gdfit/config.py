"""Typed schema of every gdfit setting, registered with Hydra's ConfigStore.

The YAML files under `conf/` pick values; these dataclasses say which keys exist and of what
type, so a misspelled key or a wrong type fails when Hydra composes the config. `validate`
checks what a type cannot (ranges, lengths, names) before any run is created.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from gdfit.errors import ConfigError
from gdfit.paths import default_store_dir

BACKENDS = ("numpy", "tensor", "autograd")
OPTIMIZERS = ("sgd", "momentum", "adam")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float32", "float64")
TARGETS = ("sin", "cos", "exp")
MAX_DEGREE = 20


@dataclass
class BackendConfig:
    name: str = MISSING  # numpy | tensor | autograd: which implementation runs the fit
    dtype: str = "float64"  # float64 | float32: precision of data, coefficients and loss


@dataclass
class OptimizerConfig:
    name: str = MISSING  # sgd | momentum | adam: the update rule
    lr: float = 1e-6  # learning rate, > 0; the loss is a *sum* over points, hence the tiny rate


@dataclass
class MomentumConfig(OptimizerConfig):
    momentum: float = 0.9  # velocity decay, in [0, 1) (torch.optim.SGD's momentum)
    nesterov: bool = False  # Nesterov's look-ahead form of the update


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # each in [0, 1)
    eps: float = 1e-8  # added to the denominator, > 0


@dataclass
class DeviceConfig:
    name: str = "cpu"  # cpu | cuda | auto (cuda when available, else cpu)


@dataclass
class DataConfig:
    n_points: int = 2000  # evenly spaced sample points, >= model.degree + 1
    x_min: float = -math.pi  # left end of the interval (inclusive)
    x_max: float = math.pi  # right end of the interval (inclusive), > x_min
    target: str = "sin"  # sin | cos | exp: the function being fitted


@dataclass
class ModelConfig:
    degree: int = 3  # polynomial degree; coefficients coef_0..coef_<degree>
    init: Any = "random"  # "random" (standard normal, seeded) or a list of degree+1 numbers


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
    curve_points: int = 10000  # most loss points logged; longer curves are thinned evenly


@dataclass
class Config:
    backend: BackendConfig = field(default_factory=BackendConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def register() -> None:
    """Make the schemas known to Hydra: `base_config` (see conf/config.yaml) and one schema per
    optimizer whose settings go beyond `lr` (see conf/optimizer/*.yaml)."""
    if not OmegaConf.has_resolver("gdfit_store"):  # used by hydra.sweep.dir in config.yaml
        OmegaConf.register_new_resolver("gdfit_store", lambda: str(default_store_dir()))
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="optimizer", name="schema_momentum", node=MomentumConfig)
    store.store(group="optimizer", name="schema_adam", node=AdamConfig)


def _one_of(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(key, f"must be one of {', '.join(options)}", value)


def _finite(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(key, "must be a finite number", value)


def initial_coefficients(init: Any, degree: int) -> list[float] | None:
    """`model.init` as a list of degree+1 floats, or None for "random"."""
    if isinstance(init, str) and init == "random":
        return None
    if not isinstance(init, list | tuple | ListConfig):
        raise ConfigError("model.init", f'must be "random" or a list of {degree + 1} numbers', init)
    if len(init) != degree + 1:
        raise ConfigError(
            "model.init",
            f"must have degree+1 = {degree + 1} numbers, lowest power first",
            list(init),
        )
    coefs = []
    for v in init:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError("model.init", "must contain only numbers", list(init))
        if not math.isfinite(v):
            raise ConfigError("model.init", "must contain only finite numbers", list(init))
        coefs.append(float(v))
    return coefs


def _validate_optimizer(opt: DictConfig) -> None:
    if opt.name == "momentum" and not 0 <= opt.momentum < 1:
        raise ConfigError("optimizer.momentum", "must be in [0, 1)", opt.momentum)
    if opt.name == "adam":
        betas = list(opt.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError("optimizer.betas", "must be two numbers, each in [0, 1)", betas)
        if not (math.isfinite(opt.eps) and opt.eps > 0):
            raise ConfigError("optimizer.eps", "must be a positive finite number", opt.eps)


def validate(cfg: DictConfig) -> None:
    """Check what the types cannot; raise ConfigError on the first bad setting."""
    _one_of("backend.name", cfg.backend.name, BACKENDS)
    _one_of("backend.dtype", cfg.backend.dtype, DTYPES)
    _one_of("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _one_of("device.name", cfg.device.name, DEVICES)
    _one_of("data.target", cfg.data.target, TARGETS)
    lr = cfg.optimizer.lr
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError("optimizer.lr", "must be a positive finite number", lr)
    _validate_optimizer(cfg.optimizer)
    if cfg.train.steps < 1:
        raise ConfigError("train.steps", "must be >= 1", cfg.train.steps)
    if cfg.train.log_every < 1:
        raise ConfigError("train.log_every", "must be >= 1", cfg.train.log_every)
    if not 0 <= cfg.model.degree <= MAX_DEGREE:
        raise ConfigError("model.degree", f"must be between 0 and {MAX_DEGREE}", cfg.model.degree)
    if cfg.data.n_points < cfg.model.degree + 1:
        raise ConfigError(
            "data.n_points",
            f"must be >= model.degree + 1 = {cfg.model.degree + 1}",
            cfg.data.n_points,
        )
    _finite("data.x_min", cfg.data.x_min)
    _finite("data.x_max", cfg.data.x_max)
    if not cfg.data.x_min < cfg.data.x_max:
        raise ConfigError(
            "data.x_min", f"must be less than data.x_max = {cfg.data.x_max}", cfg.data.x_min
        )
    if cfg.tracking.curve_points < 2:
        raise ConfigError("tracking.curve_points", "must be >= 2", cfg.tracking.curve_points)
    if not cfg.tracking.experiment:
        raise ConfigError("tracking.experiment", "must be a non-empty name")
    initial_coefficients(cfg.model.init, cfg.model.degree)

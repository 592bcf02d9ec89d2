"""`gdfit-train`: compose the config, fit the polynomial with the chosen backend, log to MLflow.

Reads like the example: data -> initial coefficients -> fit -> log -> plot.
"""

import math
import sys
import time
from dataclasses import dataclass

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from gdfit import __version__, backends, config, data, environment
from gdfit.cli import fail, refuse_group_lists, reported_errors, version_line
from gdfit.console import Reporter
from gdfit.devices import resolve_device
from gdfit.errors import Diverged, GdfitError
from gdfit.paths import conf_dir
from gdfit.seeding import seed_everything

CHUNK_ELEMENTS = 2_000_000  # ~points x steps per chunk: the host sees the curve this often
DIVERGENCE_FACTOR = 1e6  # a loss above this many times the first loss (or 1) has diverged


@dataclass
class Result:
    run_id: str
    coef: np.ndarray  # (degree+1,) float64, lowest power first
    loss_steps: np.ndarray  # (n,) the logged steps: every step unless tracking.curve_points thins
    losses: np.ndarray  # (n,) the loss before the update at each of those steps
    final_loss: float
    optimal_loss: float


def default_run_name(cfg: DictConfig) -> str:
    o = cfg.optimizer
    return f"{cfg.backend.name}-{o.name}-lr{o.lr:g}-seed{cfg.train.seed}"


def stable_rate(optimizer: DictConfig, X: np.ndarray) -> float | None:
    """The rate above which this optimizer diverges on this data, where theory gives one."""
    if optimizer.name == "sgd":
        return data.stable_lr(X)
    if optimizer.name == "momentum":  # heavy ball: stable while lr * lambda_max < 2 (1 + m)
        return data.stable_lr(X) * (1 + optimizer.momentum)
    return None


def first_divergent(losses: np.ndarray, bound: float) -> int | None:
    """Index of the first loss that is non-finite or above `bound`, if any."""
    bad = ~np.isfinite(losses) | (losses > bound)
    return int(np.argmax(bad)) if bad.any() else None


def train(cfg: DictConfig, overrides: list[str] = (), tags: dict[str, str] | None = None) -> Result:
    """One tracked run of the fit `cfg` describes; `overrides` (the command line's) and `tags`
    are recorded with it."""
    config.validate(cfg)
    device = resolve_device(cfg.device.name, cfg.backend.name)
    # Imported once the settings are known to be good: MLflow and matplotlib take ~1.3 s to
    # import, which a mistyped setting should not have to wait for.
    from gdfit import plots, tracking

    seed_everything(cfg.train.seed, torch_backend=cfg.backend.name != "numpy")

    x, y = data.make_data(cfg.data)
    X = data.design_matrix(x, cfg.model.degree)
    coef0 = data.start_coefficients(cfg.model, cfg.train.seed)
    fit = backends.load(cfg.backend.name).fit
    steps = cfg.train.steps
    chunk = max(1, min(1000, CHUNK_ELEMENTS // cfg.data.n_points))
    bound = DIVERGENCE_FACTOR * max(data.sum_squared_error(X, y, coef0), 1.0)

    git = environment.git_state()
    env = environment.describe(device, list(overrides), git)
    tags = {
        "gdfit.backend": cfg.backend.name,
        "gdfit.device": device,
        "gdfit.version": __version__,
        **environment.tags(env),
        **environment.git_tags(git),
        **(tags or {}),
    }
    run_name = cfg.tracking.run_name or default_run_name(cfg)
    with tracking.tracked_run(cfg, run_name, tags) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        run.log_dict(env, "environment.json")
        if env["git"]["dirty"]:
            run.log_text(git["diff"], "git.diff")

        logging_seconds = 0.0  # time spent in on_chunk, kept out of train_seconds

        def on_chunk(start: int, chunk_losses: np.ndarray) -> None:
            nonlocal logging_seconds
            entered = time.perf_counter()
            bad = first_divergent(chunk_losses, bound)
            kept = chunk_losses if bad is None else chunk_losses[:bad]
            run.curve.add(start, kept)
            reporter.chunk(start, kept)
            if bad is not None:
                run.set_tags({"gdfit.diverged_at_step": start + bad})
                raise Diverged(
                    start + bad,
                    float(chunk_losses[bad]),
                    cfg.optimizer.lr,
                    stable_rate(cfg.optimizer, X),
                )
            logging_seconds += time.perf_counter() - entered

        with Reporter(steps, cfg.train.log_every, run_name) as reporter, np.errstate(all="ignore"):
            began = time.perf_counter()
            optimizer = OmegaConf.to_container(cfg.optimizer)
            coef = fit(
                X,
                y,
                coef0,
                optimizer=optimizer,
                steps=steps,
                dtype=cfg.backend.dtype,
                device=device,
                chunk=chunk,
                on_chunk=on_chunk,
            )
            seconds = time.perf_counter() - began - logging_seconds  # the loop alone

        final_loss = data.sum_squared_error(X, y, coef)
        optimal_loss = data.sum_squared_error(X, y, data.least_squares(X, y))
        run.curve.flush()
        run.log_metrics(
            {
                "final_loss": final_loss,
                "optimal_loss": optimal_loss,
                "loss_gap": final_loss - optimal_loss,
                **{f"coef_{k}": c for k, c in enumerate(coef)},
                "train_seconds": seconds,
                "steps_per_second": steps / seconds,
            }
        )
        run.log_dict({f"coef_{k}": float(c) for k, c in enumerate(coef)}, "coefficients.json")
        run.log_figure(plots.fit_figure(x, y, coef, cfg.data.target, run_name), "fit.png")
        loss_steps, losses = np.array(run.curve.kept_steps), np.array(run.curve.kept_losses)
        run.log_figure(plots.loss_figure(loss_steps, losses, optimal_loss), "loss.png")

    print("Result: " + plots.polynomial_text(coef), flush=True)
    return Result(run.run_id, coef, loss_steps, losses, final_loss, optimal_loss)


config.register()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """Hands the composed config to `train`. A failed single run exits with its one-line error;
    in a sweep a failed job reports and returns +inf (what the Optuna sweeper needs) so that
    the other jobs go on."""
    try:
        return train(cfg, overrides=list(HydraConfig.get().overrides.task)).final_loss
    except GdfitError as error:
        if HydraConfig.get().mode.name != "MULTIRUN":
            fail(error)
        print(f"gdfit: error: {error}", flush=True)
        return math.inf


def main() -> None:
    """Console entry point: `gdfit-train [overrides]`."""
    args = sys.argv[1:]
    if "--version" in args:
        print(version_line())
        return
    with reported_errors():
        groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
        refuse_group_lists([a for a in args if "=" in a and not a.startswith("-")], groups)
        hydra_main()


if __name__ == "__main__":
    main()

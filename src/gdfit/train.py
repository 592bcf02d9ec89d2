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

from gdfit import __version__, backends, config, data, plots, tracking
from gdfit.console import Reporter
from gdfit.devices import resolve_device
from gdfit.environment import git_state
from gdfit.paths import conf_dir
from gdfit.seeding import seed_everything

CHUNK_ELEMENTS = 2_000_000  # ~points x steps per chunk: the host sees the curve this often


@dataclass
class Result:
    run_id: str
    coef: np.ndarray  # (degree+1,) float64, lowest power first
    losses: np.ndarray  # (steps,) loss before each update
    final_loss: float
    optimal_loss: float


def default_run_name(cfg: DictConfig) -> str:
    o = cfg.optimizer
    return f"{cfg.backend.name}-{o.name}-lr{o.lr:g}-seed{cfg.train.seed}"


def train(cfg: DictConfig) -> Result:
    """One tracked run of the fit `cfg` describes."""
    config.validate(cfg)
    device = resolve_device(cfg.device.name, cfg.backend.name)
    seed_everything(cfg.train.seed, torch_backend=cfg.backend.name != "numpy")

    x, y = data.make_data(cfg.data)
    X = data.design_matrix(x, cfg.model.degree)
    coef0 = data.start_coefficients(cfg.model, cfg.train.seed)
    fit = backends.load(cfg.backend.name).fit
    steps = cfg.train.steps
    chunk = max(1, min(1000, CHUNK_ELEMENTS // cfg.data.n_points))

    tags = {"gdfit.backend": cfg.backend.name, "gdfit.device": device, "gdfit.version": __version__}
    if git := git_state():
        tags |= {"mlflow.source.git.commit": git["commit"], "gdfit.git_dirty": git["dirty"]}
    run_name = cfg.tracking.run_name or default_run_name(cfg)
    with tracking.tracked_run(cfg, run_name, tags) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        losses = np.empty(steps)

        with Reporter(steps, cfg.train.log_every, run_name) as reporter:

            def on_chunk(start: int, chunk_losses: np.ndarray) -> None:
                losses[start : start + len(chunk_losses)] = chunk_losses
                run.curve.add(start, chunk_losses)
                reporter.chunk(start, chunk_losses)

            began = time.perf_counter()
            coef = fit(
                x,
                y,
                coef0,
                optimizer=OmegaConf.to_container(cfg.optimizer),
                steps=steps,
                dtype=cfg.backend.dtype,
                device=device,
                chunk=chunk,
                on_chunk=on_chunk,
            )
            seconds = time.perf_counter() - began

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
        run.log_figure(plots.fit_figure(x, y, coef, cfg.data.target), "fit.png")
        run.log_figure(plots.loss_figure(losses), "loss.png")

    print("Result: " + plots.polynomial_text(coef), flush=True)
    return Result(run.run_id, coef, losses, final_loss, optimal_loss)


config.register()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    """Console entry point. A bad setting prints one line and exits 2 (a sweep goes on)."""
    try:
        return train(cfg).final_loss
    except config.ConfigError as error:
        print(f"gdfit: error: {error}", file=sys.stderr)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return math.inf
        sys.exit(2)


if __name__ == "__main__":
    main()

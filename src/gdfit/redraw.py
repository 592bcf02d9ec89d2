"""A logged run's figures, drawn again from what its store holds: its config.yaml (the data
and the model), its coefficients and its loss.npz (the curve and the fit's snapshots). What
`tracking.figures` left undrawn can be drawn so later: by gdfit-compare --figures, by the
Python API, and by a large sweep for its best runs."""

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from gdfit import data, models, plots, readback
from gdfit.client import Client
from gdfit.errors import TrackingError
from gdfit.runlog import log_images


def figures(uri: str, run: Any) -> tuple[dict[str, Figure], list[tuple[int, np.ndarray]]]:
    """fit.png and loss.png of `run` (an MLflow Run) as figures, and its fit frames (none for
    a run logged before loss.npz kept the snapshots). TrackingError when the store lacks what
    they need (no config.yaml, no coefficients: a run that did not finish)."""
    logged = OmegaConf.create(readback.artifact_text(uri, run, "config.yaml"))
    x, y = data.make_data(logged.data)
    model = models.build(logged.model)
    metrics = run.data.metrics
    missing = [n for n in model.param_names if n not in metrics]
    if missing:
        raise TrackingError(f"run {run.info.run_id} has no coefficients ({run.info.status})")
    params = np.array([metrics[n] for n in model.param_names])
    curve = readback.loss_curve(uri, run.info.run_id, run.info.artifact_uri)
    with np.errstate(all="ignore"):
        F = model.features(x)
        drawn, frames = plots.run_figures(
            x,
            y,
            model,
            F,
            params,
            logged.data.target,
            run.info.run_name,
            (curve.steps, curve.losses),
            metrics.get("optimal_loss"),
            curve.snapshots,
        )
    return drawn, frames


def save(uri: str, run: Any, root: Path) -> list[Path]:
    """Write `run`'s fit.png and loss.png into `root`/<run name>/; the paths written."""
    drawn, _ = figures(uri, run)
    folder = root / run.info.run_name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    for name, figure in drawn.items():
        figure.savefig(folder / name)
    return [folder / name for name in drawn]


def log(client: Client, uri: str, run: Any) -> None:
    """Draw `run`'s figures and log them to it, as the run would have (the image series too)."""
    drawn, frames = figures(uri, run)
    with tempfile.TemporaryDirectory(prefix="gdfit-figures-") as folder:
        for name, figure in drawn.items():
            figure.savefig(Path(folder) / name)
        if frames:
            log_images(Path(folder), frames, "fit")
        client.log_artifacts(run.info.run_id, folder)
    if frames:
        client.set_tag(run.info.run_id, "mlflow.loggedImages", "True")

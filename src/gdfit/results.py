"""What gdfit.fit, gdfit.sweep and gdfit.runs return, and how a notebook shows it.

`Fit` is one run's result, with the run's own figures; `Runs` is a set of runs read back from
MLflow as a pandas DataFrame in the form `mlflow.search_runs` gives, with their table and
comparison figure. Both show in Jupyter as a short HTML summary; figures come from the run's
logged fit.png and loss.png or from gdfit.comparisons, so a notebook shows what the MLflow UI
shows.
"""

import base64
import html
import io
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig


@dataclass
class Fit:
    """One tracked run: `run_id`, `run_name`, `coef` (in the model's `param_names` order), the
    logged loss curve `loss_steps` / `losses`, `final_loss`, `optimal_loss`, `loss_gap`, `cfg`,
    and `snapshots` (step -> the parameters after that many updates)."""

    run_id: str
    run_name: str
    coef: np.ndarray  # (n_params,) float64
    loss_steps: np.ndarray  # (n,) every step (evenly thinned past 10^7 steps), as in loss.npz
    losses: np.ndarray  # (n,) float64, the loss before the update at each of those steps
    final_loss: float
    optimal_loss: float | None  # None for a model without a closed-form optimum
    cfg: DictConfig
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def loss_gap(self) -> float | None:
        """final_loss - optimal_loss: how far from the least-squares optimum the fit ended."""
        return None if self.optimal_loss is None else self.final_loss - self.optimal_loss

    @property
    def uri(self) -> str:
        """The tracking store the run is in."""
        from gdfit.store import resolve_uri

        return resolve_uri(self.cfg.tracking.uri)

    @cached_property
    def model(self) -> Any:
        from gdfit import models

        return models.build(self.cfg.model)

    @property
    def coefficients(self) -> dict[str, float]:
        """Parameter name (coef_0 ... coef_<degree>) -> fitted value."""
        return {k: float(v) for k, v in zip(self.model.param_names, self.coef, strict=True)}

    def describe(self) -> str:
        """The fitted function, as the example's last line prints it."""
        return self.model.describe(self.coef)

    def figures(self) -> dict[str, Any]:
        """fit.png and loss.png as matplotlib Figures, drawn from the run's store (whether or
        not the run drew them: see tracking.figures)."""
        from gdfit import redraw
        from gdfit.readback import find_run

        run, _ = find_run(self.uri, self.run_id)
        return redraw.figures(self.uri, run)[0]

    @cached_property
    def images(self) -> dict[str, bytes]:
        """The run's fit.png and loss.png as logged (those it has), read from its store."""
        from gdfit.readback import artifact_bytes

        found = {n: artifact_bytes(self.uri, self.run_id, n) for n in FIT_IMAGES}
        return {n: data for n, data in found.items() if data}

    def __repr__(self) -> str:
        gap = "" if self.loss_gap is None else f", loss_gap {self.loss_gap:.3g}"
        return (
            f"<Fit {self.run_name} run {self.run_id[:8]}: final_loss {self.final_loss:.8g}{gap};"
            f" {self.describe()}>"
        )

    def _repr_html_(self) -> str:
        o = self.cfg.optimizer
        facts = [
            ("final loss", f"{self.final_loss:.8g}"),
            ("least-squares optimum", _number(self.optimal_loss, ".8g")),
            ("gap", _number(self.loss_gap, ".3g")),
            ("steps", f"{self.cfg.train.steps:,}"),
            ("setup", f"{self.cfg.backend.name} ({self.cfg.backend.dtype}), {o.name} lr={o.lr:g}"),
        ]
        rows = "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        return (
            f"<div><b>{html.escape(self.run_name)}</b> &middot; run <code>{self.run_id}</code>"
            f"<br><code>{html.escape(self.describe())}</code>"
            f"<table>{rows}</table>{_images_html(self.images.values())}</div>"
        )


FIT_IMAGES = ("fit.png", "loss.png")


class Runs:
    """Runs read back from MLflow (oldest first), with the figure that compares them.

    `table`: a pandas DataFrame in the form mlflow.search_runs gives (run_id, experiment_id,
    status, artifact_uri, start_time, end_time, metrics.*, params.*, tags.*);
    `summary`: the short table of gdfit-compare and summary.csv (run_id, run_name, the
    settings that differ, status, final_loss, loss_gap, coefficients, train_seconds);
    `figure`: the loss curves overlaid (comparison.png); `parent_id`: the sweep's parent run.
    """

    def __init__(self, uri: str, runs: list, parent_id: str | None = None):
        self.uri, self.runs, self.parent_id = uri, runs, parent_id

    def draw(self, folder: str | Path) -> list[Path]:
        """Write each run's fit.png and loss.png into `folder`/<run name>/, drawn from the
        store; the paths written."""
        from gdfit import redraw

        written = []
        for run in self.runs:
            written += redraw.save(self.uri, run, Path(folder))
        return written

    def __len__(self) -> int:
        return len(self.runs)

    @cached_property
    def table(self):
        return search_frame(self.runs)

    @cached_property
    def summary(self) -> Any:
        import pandas as pd

        from gdfit.readback import table

        columns, rows = table(self.runs)
        frame = pd.DataFrame(rows, columns=columns)
        for column in columns[columns.index("final_loss") :]:  # metrics: NaN where none
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        return frame

    @cached_property
    def figure(self) -> Any:
        """The runs' loss curves on one plot (a matplotlib Figure), None when there are none."""
        from gdfit import comparisons

        return comparisons.comparison(self.uri, self.runs) if self.runs else None

    def __repr__(self) -> str:
        parent = f" of sweep {self.parent_id[:8]}" if self.parent_id else ""
        return f"<Runs: {len(self.runs)} runs{parent}>\n{self.summary.to_string(index=False)}"

    def _repr_html_(self) -> str:
        head = f"<b>{len(self.runs)} runs</b>"
        if self.parent_id:
            head += f" of sweep parent run <code>{self.parent_id}</code>"
        if not self.runs:
            return f"<div>{head}</div>"
        shown = self.summary.copy()
        shown["run_id"] = shown["run_id"].str[:8]
        digits = {"final_loss": ".8g", "loss_gap": ".3g", "train_seconds": ".3g"}
        formats = {c: _cell(digits.get(c, ".6g")) for c in shown.columns if c.startswith("coef_")}
        formats |= {c: _cell(spec) for c, spec in digits.items()}
        cells = shown.to_html(index=False, formatters=formats, na_rep="")
        return f"<div>{head}{cells}{_images_html([png(self.figure)], width='100%')}</div>"


def search_frame(runs):
    """`runs` (MLflow Run entities) as the DataFrame mlflow.search_runs returns: one row per
    run; metrics missing from a run are NaN, params and tags None."""
    import numpy as np
    import pandas as pd

    columns = {
        "run_id": [r.info.run_id for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "status": [r.info.status for r in runs],
        "artifact_uri": [r.info.artifact_uri for r in runs],
        "start_time": [pd.to_datetime(r.info.start_time, unit="ms", utc=True) for r in runs],
        "end_time": [pd.to_datetime(r.info.end_time, unit="ms", utc=True) for r in runs],
    }
    for kind, missing in (("metrics", np.nan), ("params", None), ("tags", None)):
        keys = sorted({k for r in runs for k in getattr(r.data, kind)})
        for key in keys:
            columns[f"{kind}.{key}"] = [getattr(r.data, kind).get(key, missing) for r in runs]
    return pd.DataFrame(columns)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _images_html(images, width: str = "49%") -> str:
    tags = "".join(
        f'<img style="max-width:{width};display:inline-block" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        for data in images
    )
    return f"<div>{tags}</div>" if tags else ""


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(spec: str):
    return lambda v: "" if v is None or v != v else format(v, spec)  # v != v: NaN

"""Logging a run's fit as an MLflow model: the pyfunc of gdfit.fitted as a LoggedModel, the run's
output, its metrics linked to it, so the experiment's Models tab lists it with final_loss and
loss_gap.

`mlflow.pyfunc.log_model` does this through the fluent API (a process-wide active run and
tracking URI, which gdfit's runs never use) and then loads the model again to validate its
serving example: ~0.15 s a model here. This module takes the client's route to the same
result: `mlflow.pyfunc.save_model` into a scratch folder (signature, input example, the pinned
requirements; no inference), then `create_logged_model`, `log_model_artifacts`,
`finalize_logged_model` and `log_outputs`: ~0.035 s a model. The metrics are linked as MLflow
links them, by logging them with the model's id (a run's own at its end: runlog.TrackedRun;
those of a run that has ended: `link_logged`).
"""

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric

from gdfit import fitted
from gdfit.client import Client, reading
from gdfit.redaction import redact_data

CODE_FILE = Path(__file__).with_name("fit_model.py")  # MLflow's "models from code" file
UNLINKED = ("loss",)  # the curve: a model has one loss, its final_loss


def log(
    client: Client,
    run_id: str,
    experiment_id: str,
    cfg: Any,
    params: np.ndarray,
    run_params: dict[str, str],
) -> str:
    """Log the fit `params` of run `run_id` (whose resolved config is `cfg`, whose params are
    `run_params`) as a READY model of its experiment; return the model's id. TrackingError when
    the store refuses it; a model that was created but not uploaded is marked FAILED."""
    import mlflow.pyfunc
    from mlflow.models import Model

    with reading(client.uri, "log the run's model to"):
        model = client.create_logged_model(
            experiment_id, name=cfg.model.name, source_run_id=run_id, params=redact_data(run_params)
        )
    try:
        with tempfile.TemporaryDirectory(prefix="gdfit-model-") as folder:
            path = Path(folder) / "model"
            # the MLmodel file names its run and model, as mlflow.pyfunc.log_model's does
            ids = Model(run_id=run_id, model_id=model.model_id, model_uuid=model.model_id)
            with _quiet("mlflow.pyfunc"):  # its INFO line on checking the input example
                mlflow.pyfunc.save_model(
                    path,
                    mlflow_model=ids,
                    python_model=str(CODE_FILE),
                    model_config=fitted.model_config(cfg, params),
                    signature=fitted.SIGNATURE,
                    input_example=fitted.input_example(cfg),
                    pip_requirements=list(fitted.requirements()),
                )
            with reading(client.uri, "log the run's model to"):
                client.log_model_artifacts(model.model_id, str(path))
                client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
                client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    except BaseException:
        try:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        except Exception:
            pass  # the store that refused the upload: the model stays PENDING
        raise
    return model.model_id


def link_logged(client: Client, run_id: str, model_id: str) -> None:
    """Link the metrics a finished run already has (its step-0 values, as logged) to its model."""
    with reading(client.uri, "link the run's metrics to its model in"):
        run = client.get_run(run_id)
        again = [
            Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id)
            for key in run.data.metrics
            if key not in UNLINKED
            for m in client.get_metric_history(run_id, key)
            if m.step == 0
        ]
    for start in range(0, len(again), 1000):  # MLflow's limit per batch
        client.log_batch(run_id, metrics=again[start : start + 1000], synchronous=True)


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """MLflow's INFO lines of logger `name` held back for the block; warnings still show."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(before, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(before)

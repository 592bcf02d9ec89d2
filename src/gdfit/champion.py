"""A run's model in MLflow's Model Registry, and the alias that names the best one.

`register` makes a run's logged model (a sweep: its best job's; a run without one: one logged
now from its config.yaml and coefficients) a new version of a registered model, `gdfit-<model>`
unless named, and moves the alias `champion` to it only when it beats the champion's final loss
on the same data. A version carries the run's final loss and its data as tags (what the next
registration compares) and says in its description what ran and how to run it again. Serving
`models:/gdfit-polynomial@champion` then always serves the best fit registered so far.
"""

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from gdfit import modellog, models, readback
from gdfit.client import connect, reading
from gdfit.errors import ConfigError, GdfitError
from gdfit.redaction import public_uri
from gdfit.store import store_option

ALIAS = "champion"
LOSS_TAG = "gdfit.final_loss"  # a version's final loss, as the run logged it
DATA_TAG = "gdfit.data"  # the data it was fitted on: versions compare only on the same data
RUN_TAG = "gdfit.run_id"
MODEL_TAG = "gdfit.model_id"  # the logged model: a database registry keeps no model_id itself
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class CannotRegister(GdfitError):
    exit_code = 2


@dataclass
class Registered:
    """What `register` did: `name` version `version` from run `run_id`; `champion`: the version
    the alias names afterwards; `said`: one line for the user."""

    name: str
    version: str
    run_id: str
    model_id: str
    champion: str
    said: str


def chosen_run(uri: str, ref: str) -> Any:
    """The run `ref` names (id, id prefix or name); for a sweep's parent, its best job."""
    try:
        run, _ = readback.find_run(uri, ref)
    except GdfitError as error:
        raise CannotRegister(f"cannot register: {error}") from error
    if run.data.tags.get("gdfit.sweep") != "true":
        return run
    best_id = run.data.tags.get("gdfit.best_run_id")
    if best_id:
        with reading(uri, "read runs from"):
            return connect(uri).get_run(best_id)
    best = readback.best(readback.search_runs(uri, parent=run.info.run_id))
    if best is None:
        raise CannotRegister(f"cannot register: sweep {run.info.run_name} has no finished job")
    return best


def logged_config(uri: str, run: Any) -> DictConfig:
    node = OmegaConf.create(readback.artifact_text(uri, run, "config.yaml"))
    assert isinstance(node, DictConfig)  # gdfit logs a mapping of settings
    return node


def logged_model(run: Any) -> str | None:
    """The id of the model `run` logged (its last, should it have several), or None."""
    outputs = run.outputs.model_outputs if run.outputs else []
    return max(outputs, key=lambda o: o.step).model_id if outputs else None


def model_of(uri: str, run: Any, cfg: DictConfig | None = None) -> str:
    """The id of `run`'s logged model; when it has none (a sweep's job, a run logged before
    models were, tracking.log_model=false), one logged now from its config and coefficients,
    its metrics linked to it."""
    found = logged_model(run)
    if found is not None:
        return found
    cfg = cfg or logged_config(uri, run)
    names = models.build(cfg.model).param_names
    metrics = run.data.metrics
    if readback.final_loss(run) == math.inf or any(n not in metrics for n in names):
        raise CannotRegister(
            f"run {run.info.run_id} ({run.info.status}) has no fitted coefficients to make a "
            "model of"
        )
    client = connect(uri)
    params = np.array([metrics[n] for n in names])
    model_id = modellog.log(
        client, run.info.run_id, run.info.experiment_id, cfg, params, run.data.params
    )
    modellog.link_logged(client, run.info.run_id, model_id)
    return model_id


def load(uri: str, model_id: str) -> Any:
    """The logged model `model_id` of store `uri`, loaded as an MLflow pyfunc model."""
    import mlflow.artifacts
    import mlflow.pyfunc

    with reading(uri, "read the model from"), tempfile.TemporaryDirectory() as folder:
        location = connect(uri).get_logged_model(model_id).artifact_location
        with _no_progress_bar():
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=folder, tracking_uri=uri
            )
        return mlflow.pyfunc.load_model(local)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a bar per download unless told not to (read at each download)."""
    before = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = before


def data_key(cfg: DictConfig) -> str:
    """The data a fit was made on, as versions compare it (exact numbers)."""
    d = cfg.data
    return f"{d.target} on [{float(d.x_min)!r}, {float(d.x_max)!r}], {d.n_points} points"


def check_name(name: str) -> None:
    """A registered model name MLflow takes: not empty, no / or :."""
    if not name.strip() or any(c in name for c in "/:") or len(name) > 250:
        raise ConfigError("--name", "must be a non-empty name without / or : (at most 250)", name)


def description(uri: str, run: Any, cfg: DictConfig) -> str:
    """What ran, what it came to, and how to run it again (markdown, the version's page)."""
    o, metrics = cfg.optimizer, run.data.metrics
    what = models.build(cfg.model).what
    came = f"final_loss {metrics['final_loss']:.10g}"
    if "loss_gap" in metrics:
        came += f", loss_gap {metrics['loss_gap']:.3g} above the least-squares optimum"
    store = store_option(uri)
    return (
        f"{what} fitted to {data_key(cfg)} by gradient descent: backend={cfg.backend.name} "
        f"({cfg.backend.dtype}), optimizer={o.name} lr={o.lr:g}, {cfg.train.steps} steps, "
        f"seed {cfg.train.seed}; {came}.\n\n"
        f"Run `{run.info.run_name}` (`{run.info.run_id}`) in {public_uri(uri)}. "
        f"Run it again and compare: `gdfit-rerun {run.info.run_id}{store}`; its config is the "
        "run's config.yaml."
    )


def register(uri: str, ref: str, name: str | None = None, force: bool = False) -> Registered:
    """Register the model of run (or sweep) `ref` as a new version of `name` (default
    gdfit-<model>); move the alias champion to it when it beats the champion's final loss on
    the same data, or when `force`."""
    if name is not None:
        check_name(name)
    run = chosen_run(uri, ref)
    cfg = logged_config(uri, run)
    name = name or f"gdfit-{cfg.model.name}"
    model_id = model_of(uri, run, cfg)
    loss = readback.final_loss(run)
    tags = {LOSS_TAG: repr(loss), DATA_TAG: data_key(cfg), RUN_TAG: run.info.run_id}
    tags[MODEL_TAG] = model_id
    client = connect(uri)
    with reading(uri, "register the model in"):
        if not _exists(client, name):
            client.create_registered_model(name, description=f"gdfit's fits of {cfg.model.name}")
        version = client.create_model_version(
            name,
            source=version_source(client, uri, model_id),
            run_id=run.info.run_id,
            tags=tags,
            description=description(uri, run, cfg),
            model_id=model_id,
        ).version
        version = str(version)  # an int from a database store, a string over REST
        current = _champion(client, name)
    said = f"registered run {run.info.run_id} ({run.info.run_name}) as {name} version {version}"
    if current is None:
        verdict, moved = f"the first {ALIAS}", True
    else:
        was = float(current.tags.get(LOSS_TAG, "inf"))
        other = current.tags.get(DATA_TAG) != tags[DATA_TAG]
        if other:
            verdict = (
                f"version {current.version} was fitted on other data ({current.tags.get(DATA_TAG)})"
            )
        elif loss < was:
            verdict = f"final_loss {loss:.10g} beats version {current.version}'s {was:.10g}"
        else:
            verdict = f"final_loss {loss:.10g} does not beat version {current.version}'s {was:.10g}"
        moved = force or (not other and loss < was)
        if force and not (not other and loss < was):
            verdict += "; moved by --force"
    if moved:
        with reading(uri, "set the alias in"):
            client.set_registered_model_alias(name, ALIAS, version)
        said += f"; {ALIAS} is now version {version} ({verdict})"
        return Registered(name, version, run.info.run_id, model_id, version, said)
    said += f"; {ALIAS} stays version {current.version}: {verdict} (--force moves it)"
    return Registered(name, version, run.info.run_id, model_id, str(current.version), said)


def version_source(client: Any, uri: str, model_id: str) -> str:
    """A version's source: `models:/<id>` for a tracking server, which resolves it in its own
    store; for a database store the model's files, since MLflow's database registry resolves a
    `models:/` source through the process's global tracking URI (a TODO in its code), which a
    gdfit command never sets."""
    if uri.startswith(("http://", "https://")):
        return f"models:/{model_id}"
    return client.get_logged_model(model_id).artifact_location


def serve_command(uri: str, name: str) -> str:
    """The command that serves `name`'s champion over HTTP on this machine."""
    return (
        f"MLFLOW_TRACKING_URI={public_uri(uri)} mlflow models serve -m models:/{name}@{ALIAS} "
        "-h 127.0.0.1 -p 5001 --env-manager local"
    )


def _exists(client: Any, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _champion(client: Any, name: str) -> Any:
    """The version the alias names, or None."""
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise

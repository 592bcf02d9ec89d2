"""Fits run straight through `backends.fit`, for the tests that compare backends and rules with
their references: the example's data, the polynomial model, a rule's settings by name."""

import numpy as np
from omegaconf import OmegaConf

from gdfit import backends, config, models

X_DATA = np.linspace(-np.pi, np.pi, 2000)
Y_DATA = np.sin(X_DATA)


def rule(name: str, **values):
    """The `optimizer.*` settings of rule `name`: its schema's defaults, then `values`."""
    return OmegaConf.structured(config.schema("optimizer", name)(name=name, **values))


def polynomial(degree: int = 3):
    schema = config.schema("model", "polynomial")
    return models.build(OmegaConf.structured(schema(name="polynomial", degree=degree)))


def fit_curve(
    backend, coef0, *, steps, settings=None, dtype="float64", chunk=97, ends=(), x=X_DATA, y=Y_DATA
):
    """Fit with `backend` (plain SGD at lr 1e-6 unless `settings`); returns (losses, coef,
    chunk_params: the parameters handed to on_chunk, by the step count they follow). An odd
    chunk size tests the seams."""
    model = polynomial(len(coef0) - 1)
    losses = np.full(steps, np.nan)
    chunk_params = {}

    def on_chunk(start, chunk_losses, params):
        losses[start : start + len(chunk_losses)] = chunk_losses
        chunk_params[start + len(chunk_losses)] = params

    coef = backends.fit(
        backend,
        model,
        model.features(x),
        y,
        np.asarray(coef0, dtype=np.float64),
        settings or rule("sgd", lr=1e-6),
        steps=steps,
        dtype=dtype,
        device="cpu",
        chunk=chunk,
        on_chunk=on_chunk,
        ends=ends,
    )
    return losses, coef, chunk_params

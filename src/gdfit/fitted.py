"""A fit as a function of x: the MLflow pyfunc model a run's logged model loads and serves.

What a fit is travels in the model's MLmodel file as its `model_config`, plain YAML a reader can
check: the model's settings (`model.*`), the data it was fitted on (`data.*`, which fixes
the Chebyshev basis's range) and its parameters in `param_names` order. The code is
`FittedFunction`, which MLflow pickles by reference: loading imports this module, gdfit.models
and gdfit.data (numpy; never torch, whatever backend fitted it), so the environment that loads
a model needs gdfit installed, at the version in its requirements.
"""

import warnings
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec
from omegaconf import OmegaConf

from gdfit import data, models

COLUMN = "x"  # the input column: the points at which to evaluate the fit
# What loading imports, pinned at the versions that logged the model (none inferred: inference
# imports and times the whole environment, ~1.5 s a model).
LOADED_WITH = ("gdfit", "mlflow", "numpy", "pandas", "cloudpickle", "omegaconf", "hydra-core")
# x as a named 1-D tensor: MLflow then takes a DataFrame with column x, {"x": [...]} and a bare
# 1-D array alike (a column schema refuses the array), and refuses a frame without the column.
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float64), (-1,), COLUMN)]),
    outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
)


# MLflow reads predict's type hints as a schema, and warns when there are none, through a
# "once" filter of its own that outranks any filter set here; this model's schema is SIGNATURE,
# so its nudge is recorded rather than shown (defining the class warns of nothing else).
with warnings.catch_warnings(record=True):

    class FittedFunction(PythonModel):
        """y = the fitted model at x, in float64: `models.<name>.Model.predict` of the logged
        parameters at the features of x (`models.features_at`)."""

        def load_context(self, context: Any) -> None:
            self.model, self.params = build(context.model_config)

        def predict(self, context, model_input, params=None):
            x = points(model_input)
            with np.errstate(all="ignore"):  # far outside the data a cubic overflows to inf
                return np.asarray(
                    self.model.predict(self.params, models.features_at(self.model, x))
                )


def build(fit: dict) -> tuple[Any, np.ndarray]:
    """The Model of a fit's `model_config`, having seen its data, and its parameters."""
    model = models.build(OmegaConf.create(fit["model"]))
    x, _ = data.make_data(OmegaConf.create(fit["data"]))
    model.features(x)  # a basis fixed by the data's range (Chebyshev) learns it here
    return model, np.array(fit["params"], dtype=np.float64)


def points(model_input: Any) -> np.ndarray:
    """(n,) float64 x from what MLflow hands over: {"x": array} (its signature's named tensor),
    or, called directly, a DataFrame with column `x`, a 1-D array or a list of numbers."""
    if isinstance(model_input, dict) or hasattr(model_input, "columns"):
        if COLUMN not in model_input:
            raise ValueError(f"the input needs a column {COLUMN!r}; it has {list(model_input)}")
        model_input = model_input[COLUMN]
    x = np.asarray(model_input, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"x must be one number per point (a 1-D array); got shape {x.shape}")
    return x


def model_config(cfg: Any, params: np.ndarray) -> dict:
    """What `FittedFunction` needs of a run whose resolved config is `cfg`."""
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "params": [float(v) for v in params],
    }


def input_example(cfg: Any):
    """Five points spread over the data's range, as the DataFrame a caller sends."""
    import pandas as pd

    return pd.DataFrame({COLUMN: np.linspace(cfg.data.x_min, cfg.data.x_max, 5)})


@cache
def requirements() -> tuple[str, ...]:
    """`name==version` of what loading imports, as installed here."""
    pinned = []
    for name in LOADED_WITH:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # gdfit run from a source tree without being installed
            continue
    return tuple(pinned)

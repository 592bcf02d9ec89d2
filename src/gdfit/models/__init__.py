"""The models: the function of x whose parameters gradient descent fits, one module each.

A model module (its name is its option, `model=<name>`, in conf/model/<name>.yaml) defines

    GRADIENTS   the gradient kinds it supports, each a backend's `GRADIENT`: "hand" needs
                `loss_grad`, "autograd" needs `loss` written with differentiable operations
                (or `autograd_loss`), "module" needs `module`
    Settings    (optional) its schema, a subclass of config.ModelConfig
    check(cfg)  (optional) raise ConfigError for settings its schema cannot refuse
    Model(settings) with
        param_names          ["coef_0", ...]: the metric names of the parameters, in order
        init(rng)            (n_params,) float64 random start point
        init_hint            how to write `model.init` by hand, for error messages
        what                 the function class as a short noun phrase, for run descriptions:
                             "a cubic", "a cubic in the Chebyshev basis", "the tutorial's
                             Legendre model y = a + b P3(c + d x)"
        features(x)          tuple of float64 numpy arrays computed once from x (n_points,);
                             a backend converts each to its own arrays
        features_at(x)       (optional) the features at new points x of a fit made on the data
                             `features` last saw (the Chebyshev basis maps x by that data's
                             range); `features` when absent
        predict(p, F)        the model's y at every point
        loss(p, F, y)        sum of squared errors of predict(p, F) against y
        loss_grad(p, F, y)   (loss, d loss / d p), written by hand
        optimum(F, y)        the best parameters in closed form, or None when there is none
        curvature(F)         the largest eigenvalue of the loss's Hessian, or None
        describe(p, digits)  the fitted function as one line of text, at full precision or
                             with `digits` significant digits
        linear               (optional) True when predict(p, F) is F[0] @ p, F[0] the design
                             matrix: a batched sweep then fits K configs as one program
                             (gdfit.batchfit)
    and, for the gradient kinds that ask for them,
        autograd_loss()      (optional) a loss(p, F, y) for one autograd fit, made fresh for
                             each: one whose forward is a torch.autograd.Function, or whose
                             forward changes from step to step; `loss` when absent
        module(p, F)         (net, inputs, params) for one torch.nn fit: a torch.nn.Module
                             holding the start point p (a tensor), the tensors to call it
                             with (from F, the features as tensors) so that `net(*inputs)` is
                             the prediction, and a function giving its parameters as one
                             tensor in `param_names` order

`predict`, `loss` and `loss_grad` use arithmetic operators, indexing and `.sum()` only (no numpy
or torch functions), so numpy arrays and torch tensors, differentiable or not, run the same
lines; the others take float64 numpy.
"""

import math

import numpy as np
from omegaconf import DictConfig, ListConfig

from gdfit import registry
from gdfit.errors import ConfigError


def build(settings: DictConfig):
    """The Model that `model.*` describes."""
    return registry.load("model", settings.name).Model(settings)


def features_at(model, x: np.ndarray) -> tuple:
    """The features at new points `x` of a fit on the data `model.features` last saw."""
    return getattr(model, "features_at", model.features)(x)


def given_start(model, init) -> list[float] | None:
    """`model.init` as one float per parameter, or None for "random"."""
    n = len(model.param_names)
    if isinstance(init, str) and init == "random":
        return None
    if not isinstance(init, list | tuple | ListConfig):
        raise ConfigError("model.init", f'must be "random" or a list of {n} numbers', init)
    if len(init) != n:
        raise ConfigError("model.init", f"must have {model.init_hint}", list(init))
    for v in init:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError("model.init", "must contain only numbers", list(init))
        if not math.isfinite(v):
            raise ConfigError("model.init", "must contain only finite numbers", list(init))
    return [float(v) for v in init]


def start(model, init, seed: int) -> np.ndarray:
    """(n_params,) float64: `model.init`, or the model's random draw from default_rng(seed), one
    draw whatever the backend."""
    given = given_start(model, init)
    if given is not None:
        return np.array(given, dtype=np.float64)
    return model.init(np.random.default_rng(seed))

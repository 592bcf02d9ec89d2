"""The three implementations of one gradient-descent fit, looked up by name.

Each backend module defines

    fit(X, y, coef0, *, optimizer, steps, dtype, device, chunk, on_chunk) -> coef

X: (n_points, degree+1) float64 design matrix, column k holding x**k (`data.design_matrix`),
so that X @ coef is the polynomial a + b x + c x^2 + ...; y: (n_points,) float64 targets;
coef0: (degree+1,) float64 starting coefficients, lowest power first; optimizer: the
`optimizer.*` settings as a dict. It runs `steps` updates of that rule on the sum of squared
errors and returns the final coefficients as float64. Every `chunk` steps it hands the losses
of those steps to `on_chunk(first_step, losses)` (a view: copy what you keep); loss t is
measured *before* update t, as the example prints it. Torch is imported only inside the torch
backends.
"""

from collections.abc import Callable, Iterator
from importlib import import_module
from types import ModuleType

import numpy as np

OnChunk = Callable[[int, np.ndarray], None]

_MODULES = {
    "numpy": "gdfit.backends.numpy_backend",
    "tensor": "gdfit.backends.tensor_backend",
    "autograd": "gdfit.backends.autograd_backend",
}


def names() -> list[str]:
    return list(_MODULES)


def load(name: str) -> ModuleType:
    return import_module(_MODULES[name])


def chunks(steps: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges of at most `size` steps covering 0..steps-1."""
    for start in range(0, steps, size):
        yield start, min(start + size, steps)

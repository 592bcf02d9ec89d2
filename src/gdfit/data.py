"""The problem: sample points, the target values, and the exact least-squares answer.

Everything here is float64 numpy; backends convert to their own dtype and device.
"""

import numpy as np
from omegaconf import DictConfig

from gdfit.config import initial_coefficients

TARGETS = {"sin": np.sin, "cos": np.cos, "exp": np.exp}


def make_data(data: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """x: (n_points,) evenly spaced in [x_min, x_max]; y = target(x)."""
    x = np.linspace(data.x_min, data.x_max, data.n_points)
    return x, TARGETS[data.target](x)


def design_matrix(x: np.ndarray, degree: int) -> np.ndarray:
    """(n_points, degree+1): column k is x**k, so `X @ coef` evaluates the polynomial.

    Column-major, so both X @ coef and X.T @ r read contiguous memory without a copy.
    """
    X = np.empty((len(x), degree + 1), order="F")
    for k in range(degree + 1):
        X[:, k] = x**k  # the seed's own powers: x, x ** 2, x ** 3
    return X


def sum_squared_error(X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> float:
    r = X @ coef - y
    return float(r @ r)


def least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The coefficients gradient descent converges to (closed form, via lstsq)."""
    return np.linalg.lstsq(X, y, rcond=None)[0]


def start_coefficients(model: DictConfig, seed: int) -> np.ndarray:
    """`model.init`, or standard normal draws from default_rng(seed): one draw for all backends."""
    given = initial_coefficients(model.init, model.degree)
    if given is not None:
        return np.array(given, dtype=np.float64)
    return np.random.default_rng(seed).standard_normal(model.degree + 1)


def stable_lr(X: np.ndarray) -> float:
    """The largest learning rate at which plain gradient descent on this sum of squares does
    not diverge: 2 / the largest eigenvalue of its Hessian 2 X^T X. It shrinks as 1/n_points."""
    return 2.0 / float(np.linalg.eigvalsh(2.0 * X.T @ X)[-1])

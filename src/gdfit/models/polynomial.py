"""The example's model: y = a + b x + c x^2 + d x^3 (any degree), linear in its coefficients.

The example computes the powers of x at every step; here they are computed once, as the columns
of the design matrix X, so the prediction is X @ coef and the gradient X.T @ (2 residual):
two matrix-vector products a step. Being linear, the model has a closed-form optimum (least
squares) and a constant curvature, which give `optimal_loss`, `loss_gap` and the stable rate.
"""

from dataclasses import dataclass

import numpy as np

from gdfit.config import ModelConfig
from gdfit.errors import ConfigError

GRADIENTS = ("hand", "autograd", "module")
MAX_DEGREE = 20
DEGREE_NAMES = {0: "constant", 1: "line", 2: "quadratic", 3: "cubic", 4: "quartic", 5: "quintic"}


@dataclass
class Settings(ModelConfig):
    degree: int = 3  # polynomial degree, 0..20; coefficients coef_0..coef_<degree>


def check(cfg) -> None:
    degree = cfg.model.degree
    if not 0 <= degree <= MAX_DEGREE:
        raise ConfigError("model.degree", f"must be between 0 and {MAX_DEGREE}", degree)
    if cfg.data.n_points < degree + 1:
        raise ConfigError(
            "data.n_points", f"must be >= model.degree + 1 = {degree + 1}", cfg.data.n_points
        )


def degree_name(degree: int) -> str:
    """The function class as runs are described: "a cubic", "a degree-7 polynomial"."""
    return f"a {DEGREE_NAMES.get(degree, f'degree-{degree} polynomial')}"


class Model:
    linear = True  # predict(p, F) is F[0] @ p: a batched sweep may fit K of them as one program

    def __init__(self, settings):
        self.degree = settings.degree
        self.param_names = [f"coef_{k}" for k in range(self.degree + 1)]
        self.init_hint = f"degree+1 = {self.degree + 1} numbers, lowest power first"
        self.what = degree_name(self.degree)

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(self.degree + 1)

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X (n_points, degree+1), column k holding x**k, and its transpose (a view).

        Column-major, so both X @ coef and X.T @ r read contiguous memory without a copy.
        """
        X = np.empty((len(x), self.degree + 1), order="F")
        for k in range(self.degree + 1):
            X[:, k] = x**k  # the example's own powers: x, x ** 2, x ** 3
        return X, X.T

    def predict(self, coef, F):
        return F[0] @ coef

    def loss(self, coef, F, y):
        residual = F[0] @ coef - y  # y_pred - y, (n,)
        return residual @ residual  # the sum of squared errors

    def loss_grad(self, coef, F, y):
        X, Xt = F
        residual = X @ coef - y
        return residual @ residual, Xt @ (2.0 * residual)  # loss, d loss / d coef

    def module(self, coef, F):
        """The tutorial's torch.nn cell: Linear(degree, 1) over x, x^2, ..., its bias holding
        coef_0 and its weights the others, then Flatten(0, 1) to one prediction per point."""
        import torch

        linear = torch.nn.Linear(self.degree, 1, dtype=coef.dtype, device=coef.device)
        with torch.no_grad():
            linear.bias.copy_(coef[:1])
            linear.weight.copy_(coef[1:].reshape(1, -1))
        net = torch.nn.Sequential(linear, torch.nn.Flatten(0, 1))
        xx = F[0][:, 1:].contiguous()  # (n_points, degree), row-major like the tutorial's xx
        return net, (xx,), lambda: torch.cat((linear.bias, linear.weight[0]))

    def optimum(self, F, y) -> np.ndarray:
        """The coefficients gradient descent converges to (least squares, via lstsq)."""
        return np.linalg.lstsq(F[0], y, rcond=None)[0]

    def curvature(self, F) -> float:
        """The largest eigenvalue of the Hessian 2 X^T X; it grows as n_points."""
        X = F[0]
        return float(np.linalg.eigvalsh(2.0 * X.T @ X)[-1])

    def describe(self, coef, digits: int | None = None) -> str:
        """`y = a + b x + c x^2 + ...` as the example prints it (full precision unless `digits`)."""
        terms = [f"{float(c):.{digits}g}" if digits else f"{float(c)}" for c in coef]
        powers = ["", " x"] + [f" x^{k}" for k in range(2, len(terms))]
        return "y = " + " + ".join(t + p for t, p in zip(terms, powers, strict=False))

"""The cubic in the Chebyshev basis: y = a T0(u) + b T1(u) + c T2(u) + d T3(u) (any degree),
u being x mapped onto [-1, 1] by the data's own range.

The same functions as the polynomial model, in a basis gradient descent finds easier: on
[-pi, pi] the columns 1, x, x^2, x^3 give the Hessian a condition number of ~330, the columns
T0(u)..T3(u), nearly orthogonal, ~6. At 0.9 times its stable rate plain SGD brings the loss
within 1e-6 of the optimum (relative) in ~40 steps here, ~1,400 for the polynomial. Only the
design matrix differs: the prediction, gradient, module, optimum and curvature are the
polynomial's, over these columns.
"""

from dataclasses import dataclass

import numpy as np

from gdfit.models import polynomial

GRADIENTS = polynomial.GRADIENTS
check = polynomial.check  # the degree's range and enough points for it


@dataclass
class Settings(polynomial.Settings):
    degree: int = 3  # highest order T_degree, 0..20; coefficients coef_0..coef_<degree>


class Model(polynomial.Model):
    def __init__(self, settings):
        super().__init__(settings)
        self.init_hint = f"degree+1 = {self.degree + 1} numbers, the coefficient of T0(u) first"
        self.what = f"{polynomial.degree_name(self.degree)} in the Chebyshev basis"
        self.center = self.half_width = None  # u = (x - center) / half_width, set by features

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X (n_points, degree+1), column k holding T_k(u), and its transpose (a view)."""
        lo, hi = float(x.min()), float(x.max())
        self.center, self.half_width = (lo + hi) / 2, (hi - lo) / 2 or 1.0  # one point: u = 0
        return self.features_at(x)

    def features_at(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The columns at new points x, u mapped by the range of the data `features` saw."""
        assert self.center is not None and self.half_width is not None, "features(x) first"
        u = (x - self.center) / self.half_width
        X = np.empty((len(x), self.degree + 1), order="F")
        for k in range(self.degree + 1):  # T0 = 1, T1 = u, T_k = 2u T_(k-1) - T_(k-2)
            X[:, k] = 1.0 if k == 0 else u if k == 1 else 2 * u * X[:, k - 1] - X[:, k - 2]
        return X, X.T

    def describe(self, coef, digits: int | None = None) -> str:
        """`y = a T0(u) + b T1(u) + ..., u = (x - center) / half_width`, the numbers from the
        data `features` saw; before it has seen any, u's definition in terms of the data range."""

        def text(v):
            return f"{float(v):.{digits}g}" if digits else f"{float(v)}"

        terms = " + ".join(f"{text(c)} T{k}(u)" for k, c in enumerate(coef))
        if self.center is None:
            u = "(2x - data.x_min - data.x_max) / (data.x_max - data.x_min)"
        else:
            sign = "+" if self.center < 0 else "-"
            u = f"(x {sign} {text(abs(self.center))}) / {text(self.half_width)}"
        return f"y = {terms}, u = {u}"

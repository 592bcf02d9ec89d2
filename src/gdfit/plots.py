"""The figures a run logs. Built on matplotlib's object API: no pyplot, no global state."""

import numpy as np
from matplotlib.figure import Figure

MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.91}
MAX_PLOTTED = 2000  # points drawn per line; larger data are subsampled evenly for the figure


def _every(n: int) -> slice:
    return slice(None, None, max(1, n // MAX_PLOTTED))


def fit_figure(x: np.ndarray, y: np.ndarray, coef: np.ndarray, target: str) -> Figure:
    """The data and the fitted polynomial over the same x."""
    s = _every(len(x))
    fig = Figure(figsize=(6, 4))
    fig.subplots_adjust(**MARGINS)  # fixed margins: a layout engine costs ~40 ms a figure
    ax = fig.add_subplot()
    ax.plot(x[s], y[s], label=f"{target}(x)", linewidth=3, alpha=0.5)
    ax.plot(x[s], np.polynomial.polynomial.polyval(x[s], coef), "--", label="fitted polynomial")
    ax.set(xlabel="x", ylabel="y")
    ax.set_title(polynomial_text(coef, digits=4), fontsize="small")
    ax.legend()
    return fig


def loss_figure(steps: np.ndarray, losses: np.ndarray) -> Figure:
    """Sum of squared errors against step, log scale."""
    s = _every(len(losses))
    fig = Figure(figsize=(6, 4))
    fig.subplots_adjust(**MARGINS)
    ax = fig.add_subplot()
    ax.plot(steps[s], losses[s])
    ax.set(xlabel="step", ylabel="loss (sum of squared errors)", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def polynomial_text(coef, digits: int | None = None) -> str:
    """`y = a + b x + c x^2 + ...` as the example prints it (full precision unless `digits`)."""
    terms = [f"{float(c):.{digits}g}" if digits else f"{float(c)}" for c in coef]
    powers = ["", " x"] + [f" x^{k}" for k in range(2, len(terms))]
    return "y = " + " + ".join(t + p for t, p in zip(terms, powers, strict=False))


def comparison_figure(curves: list[tuple[str, list[int], list[float]]]) -> Figure:
    """Several runs' loss curves on one log-scale plot, one (label, steps, losses) each."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for label, steps, losses in curves:
        ax.plot(steps, losses, label=label)
    ax.set(xlabel="step", ylabel="loss (sum of squared errors)", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    return fig

"""The figures of one run: fit.png (the data and the fitted function), loss.png (the loss on a
log scale over the least-squares optimum) and the fit at a few steps as an MLflow image series.

matplotlib's own idiom for many similar plots: each figure is built once per process
(`kept`) and a run updates its artists (`set_data`, `set_text`) before it is saved. The
functions `fit_figure`, `loss_figure` and `fit_frames` build new figures for a caller who keeps
them (a notebook). Object API only: no pyplot, no global state.
"""

import math
import textwrap
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator

MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.91}
MAX_PLOTTED = 2000  # points drawn per line; larger data are subsampled evenly for the figure
MAX_TITLE = 76  # characters of a line of fit.png's formula; longer ones wrap


def every(n: int) -> slice:
    """Every k-th point, so that a line holds at most MAX_PLOTTED of them."""
    return slice(None, None, max(1, n // MAX_PLOTTED))


class FitFigure:
    """fit.png: the data and the fitted y over x, the run's name above, the formula as title."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(self.figure)  # its own canvas: each save reuses its renderer's caches
        self.ax = ax = self.figure.add_subplot()
        (self.data,) = ax.plot([], [], linewidth=3, alpha=0.5, label="data")
        (self.fitted,) = ax.plot([], [], "--", label="fit")
        self.legend = ax.legend()
        ax.set(xlabel="x", ylabel="y")
        self.title = ax.set_title("", fontsize="small")
        self.name = self.figure.suptitle("", fontsize="medium", y=0.97)

    def draw(
        self, x: np.ndarray, y: np.ndarray, fitted: np.ndarray, target: str, name: str, formula: str
    ) -> Figure:
        s = every(len(x))
        self.data.set_data(x[s], y[s])
        self.legend.get_texts()[0].set_text(f"{target}(x)")
        self.fitted.set_data(x[s], fitted[s])
        self.ax.relim()
        self.ax.autoscale_view()
        formula = formula.replace("+ -", "- ")  # the example's Result line keeps its "+ -"
        lines = textwrap.wrap(formula, MAX_TITLE, break_long_words=False) or [""]
        self.title.set_text("\n".join(lines))
        self.name.set_text(name)
        top = (0.86 if name else MARGINS["top"]) - 0.05 * (len(lines) - 1)
        self.figure.subplots_adjust(**(MARGINS | {"top": top}))  # fixed margins: no layout
        return self.figure


class LossFigure:
    """loss.png: the loss against step on a log scale, over the least-squares optimum."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(self.figure)
        self.figure.subplots_adjust(**MARGINS)
        self.ax = ax = self.figure.add_subplot()
        (self.line,) = ax.plot([], [], label="loss")
        self.floor = ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1.2)
        ax.set(xlabel="step", ylabel="loss (sum of squared errors)", yscale="log")
        ax.yaxis.set_major_formatter(_powers_of_ten)
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # "30" where "3×10¹" was
        ax.grid(True, which="both", alpha=0.3)

    def draw(self, steps: np.ndarray, losses: np.ndarray, optimal_loss: float | None) -> Figure:
        s = every(len(losses))
        self.line.set_data(steps[s], losses[s])
        marked = optimal_loss is not None and optimal_loss > 0
        self.floor.set_visible(marked)
        legend = self.ax.get_legend()
        if optimal_loss is not None and marked:
            self.floor.set_ydata([optimal_loss, optimal_loss])
            self.floor.set_label(f"least-squares optimum {optimal_loss:.6g}")
            self.ax.legend(handles=[self.line, self.floor], loc="upper right", fontsize="small")
        elif legend is not None:
            legend.remove()
        self.ax.relim(visible_only=True)
        self.ax.autoscale_view()
        _whole_decades(self.ax)
        return self.figure


def _whole_decades(ax: Any) -> None:
    """A log y-axis spanning a decade or more ends on whole decades, with minor ticks at 2 and
    5: the runs of a sweep then share one axis (their loss.png compare at a glance in MLflow),
    and the grid stays readable over many decades. A narrower view keeps its autoscaled ends
    and every minor tick, or it could show none."""
    low, high = ax.get_ylim()
    if 0 < low and high <= 1e300 and high / low >= 10:  # a decade more stays finite
        low, high = 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))
        if math.isfinite(high) and low > 0:
            ax.set_ylim(low, high, auto=None)  # None: the next run autoscales again
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            return
    ax.yaxis.set_minor_locator(LogLocator(subs="auto"))


SUPERSCRIPTS = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def _powers_of_ten(value: float, _position: Any) -> str:
    """`10⁴` as plain text rather than mathtext's `$10^{4}$`."""
    if not (math.isfinite(value) and value > 0):
        return f"{value:.4g}"
    exponent = round(math.log10(value))
    if not math.isclose(value, 10.0**exponent):
        return f"{value:.4g}"
    return "10" + str(exponent).translate(SUPERSCRIPTS)


class Frames:
    """The fit at a few steps, as images for MLflow's image cards: the data, the fitted line and
    the step; no ticks (fit.png carries the numbers). Square, 360 pixels, with 10-point text:
    MLflow's image card draws each image in a square frame at up to its own size, so a square
    image fills it, readable, two abreast in gdfit's view. The y-range is the data's, fixed,
    so the frames compare and an early wild fit leaves the view. What stays the same within a
    run is drawn once, and each frame draws its line and step over it (matplotlib's
    blitting)."""

    def __init__(self) -> None:
        self.figure = fig = Figure(figsize=(3.6, 3.6), dpi=100)
        self.canvas = FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.92)
        self.ax = ax = fig.add_subplot()
        (self.data,) = ax.plot([], [], linewidth=3, alpha=0.5, label="data")
        (self.fitted,) = ax.plot([], [], "--", color="C1", linewidth=2, label="fit", animated=True)
        self.legend = ax.legend(loc="upper left", fontsize=10)
        ax.set(xticks=[], yticks=[])
        self.name = fig.suptitle("", fontsize=11)
        self.step = ax.text(
            0.98, 0.04, "", transform=ax.transAxes, ha="right", fontsize=11, animated=True
        )

    def draw(
        self, x: np.ndarray, y: np.ndarray, target: str, snapshots: list, name: str
    ) -> list[tuple[int, np.ndarray]]:
        s = slice(None, None, max(1, len(x) // 300))
        xs, ys = x[s], y[s]
        self.data.set_data(xs, ys)
        self.legend.get_texts()[0].set_text(f"{target}(x)")
        low, high = float(ys.min()), float(ys.max())
        pad = 0.25 * (high - low or 1.0)
        self.ax.set(xlim=(xs[0], xs[-1]), ylim=(low - pad, high + pad))
        self.name.set_text(name)
        self.canvas.draw()  # all but the animated line and step
        background = self.canvas.copy_from_bbox(self.figure.bbox)
        frames = []
        for step, predicted in snapshots:
            self.canvas.restore_region(background)
            self.fitted.set_data(xs, np.asarray(predicted)[s])
            self.step.set_text(f"step {step}")
            self.ax.draw_artist(self.fitted)
            self.ax.draw_artist(self.step)
            frames.append((step, np.asarray(self.canvas.buffer_rgba())[..., :3].copy()))
        return frames


_kept: dict[type, Any] = {}  # this process's figure of each kind, redrawn for each run


def kept(kind: type) -> Any:
    """The figure of `kind` this process keeps: built on first use, then updated per run."""
    if kind not in _kept:
        _kept[kind] = kind()
    return _kept[kind]


def fit_figure(
    x: np.ndarray,
    y: np.ndarray,
    fitted: np.ndarray,
    target: str,
    run_name: str = "",
    formula: str = "",
) -> Figure:
    """A new fit.png figure: the data and the fitted model's y (`fitted`, at each x) over the
    same x, titled with the run's name and the fitted function (the model's `describe`)."""
    return FitFigure().draw(x, y, fitted, target, run_name or "", formula)


def loss_figure(steps: Any, losses: Any, optimal_loss: float | None = None) -> Figure:
    """A new loss.png figure: the sum of squared errors against step, log scale, over the
    least-squares optimum's level (the plateau the curve reaches is that floor)."""
    return LossFigure().draw(np.asarray(steps), np.asarray(losses), optimal_loss)


def fit_frames(
    x: np.ndarray, y: np.ndarray, target: str, snapshots: list, run_name: str
) -> list[tuple[int, np.ndarray]]:
    """(step, RGB image (h, w, 3) uint8) of the fit at each (step, prediction) snapshot, the
    prediction being the model's values at every x (so any model draws the same way)."""
    return Frames().draw(x, y, target, snapshots, run_name)


def run_figures(
    x: np.ndarray,
    y: np.ndarray,
    model: Any,
    F: tuple,
    params: np.ndarray,
    target: str,
    name: str,
    curve: tuple[np.ndarray, np.ndarray],
    optimal_loss: float | None,
    snapshots: dict[int, np.ndarray],
) -> tuple[dict[str, Figure], list[tuple[int, np.ndarray]]]:
    """What a run logs as figures, drawn on this process's kept figures: {"fit.png": ...,
    "loss.png": ...} and the fit frames at the `snapshots` (step -> parameters). `model` is
    the run's (gdfit.models), F its features of x, `curve` (steps, losses)."""
    fit = kept(FitFigure).draw(
        x, y, model.predict(params, F), target, name, model.describe(params, 4)
    )
    loss = kept(LossFigure).draw(*curve, optimal_loss)
    taken = [(s, model.predict(p, F)) for s, p in sorted(snapshots.items())]
    frames = kept(Frames).draw(x, y, target, taken, name) if taken else []
    return {"fit.png": fit, "loss.png": loss}, frames

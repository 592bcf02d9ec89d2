"""The figures gdfit draws. Built on matplotlib's object API: no pyplot, no global state.

A run's own figures (fit.png, loss.png, the fit frames) use fixed margins because they are
drawn for every run; the comparison figures of a sweep use the constrained layout, which costs
~40 ms more but keeps legends, colour bars and labels inside the canvas whatever they hold.
"""

import math
import textwrap
import weakref
from dataclasses import dataclass, field

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import LogFormatter, LogLocator
from matplotlib.transforms import blended_transform_factory

from gdfit import png

MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.91}
MAX_PLOTTED = 2000  # points drawn per line; larger data are subsampled evenly for the figure
MAX_LEGEND = 10  # runs drawn one colour each with a legend; more get a colour scale
MAX_LABEL = 70  # characters of a legend entry
MAX_TITLE = 76  # characters of a line of fit.png's formula; longer ones wrap
OFFSETS = [(0, ()), (0, (5, 3)), (0, (1, 2)), (0, (6, 2, 1, 2))]  # solid, dashed, dotted, dash-dot
MARKERS = ["o", "s", "^", "D", "v", "P"]
COINCIDE_DEX = 1e-3  # curves within 0.23% of each other at every step cannot be told apart


def _every(n: int) -> slice:
    return slice(None, None, max(1, n // MAX_PLOTTED))


# ---- one run: the fit, the loss, and the fit as frames for MLflow's image slider ----
#
# Every run draws these three, so each is a class that builds its figure once (axes, lines,
# legend, an Agg canvas of its own) and redraws it with a run's data. `reuse=True` takes the
# one this process keeps for that layout: a sweep's later jobs skip building ~100 tick
# artists a figure and hit the text caches of the same renderer, and draw the same pixels.
# Such a figure is the caller's only until the next call.


def _kept(kind: type, reuse: bool, *layout):
    """A new figure of `kind`, or with `reuse` the one kept for that layout, unless matplotlib's
    settings changed since it was built (a notebook's rc_context)."""
    if not reuse:
        return kind(*layout)
    drawn = _reused.get((kind, *layout))
    if drawn is None or drawn.rc != matplotlib.rcParams:
        drawn = _reused[(kind, *layout)] = kind(*layout)
    return drawn


_reused: dict[tuple, object] = {}  # (kind, *layout) -> this process's figure of that layout


_layered = weakref.WeakSet()  # figures whose canvas holds their last _Layered render


class _Layered:
    """A figure drawn as two layers. What depends only on the axes' view (the axes, ticks, grid
    and their labels: most of a figure's cost) is drawn once per view and kept as pixels;
    `moving`, what changes from run to run (lines, titles, legend), is drawn over a copy of it
    in the order matplotlib draws them (by zorder: lines, spines, titles, legend, suptitle),
    so the pixels are a full draw's (tests/test_plots.py). A sweep's jobs mostly share a view:
    their figures cost the cheap layer and the PNG (see gdfit.png). The last KEPT views are kept
    (~1 MB each).

    Drawn in full instead: when the axis and grid are not below the lines (a matplotlibrc's
    `axes.axisbelow: False`), and for a view whose y-axis shows an offset ("+1e5"), where
    matplotlib moves the title by its width."""

    KEPT = 4

    def __init__(self, figure: Figure, moving: list):
        self.figure, self.canvas, self.moving = figure, FigureCanvasAgg(figure), moving
        self.views: dict = {}  # view -> (the pixels drawn under `moving`, its texts' places)
        self.rc = matplotlib.rcParams.copy()  # the settings it was built with
        self.texts = [a for a in moving if isinstance(a, Text)]  # titles: placed by the draw
        self.below = all(  # each axes' axis and grid drawn before its moving artists
            max(ax.xaxis.get_zorder(), ax.yaxis.get_zorder())
            < min((a.get_zorder() for a in moving if a in ax.get_children()), default=math.inf)
            for ax in figure.axes
        )
        _layered.add(figure)

    def render(self) -> Figure:
        if not self.below:
            self.canvas.draw()
            return self.figure
        view = tuple(tuple(ax.viewLim.bounds) for ax in self.figure.axes)
        kept = self.views.pop(view, None)  # popped and put back: the newest last
        if kept is None:
            for artist in self.moving:
                artist.set_animated(True)  # left out of canvas.draw()
            try:
                self.canvas.draw()
            finally:
                for artist in self.moving:
                    artist.set_animated(False)
            # The pixels, and where the draw put the texts (an axes' title: above its ticks)
            places = [text.get_position() for text in self.texts]
            kept = self.canvas.copy_from_bbox(self.figure.bbox), places
            offset = any(ax.yaxis.offsetText.get_text() for ax in self.figure.axes)
        else:
            self.canvas.restore_region(kept[0])
            for text, place in zip(self.texts, kept[1], strict=True):
                text.set_position(place)
            offset = False
        if not offset:
            self.views[view] = kept
            if len(self.views) > self.KEPT:
                del self.views[next(iter(self.views))]
        renderer = self.canvas.get_renderer()
        for artist in self.moving:
            artist.draw(renderer)
        self.figure.stale = False  # the canvas holds it all, as after a full draw
        return self.figure


class _Fit(_Layered):
    """fit.png: the data and the fitted y over x, the run's name above, the formula as title."""

    def __init__(self, title_lines: int, named: bool):
        top = (0.86 if named else MARGINS["top"]) - 0.05 * (title_lines - 1)
        fig = Figure(figsize=(6, 4))
        fig.subplots_adjust(**(MARGINS | {"top": top}))  # no layout engine: fixed margins
        self.ax = ax = fig.add_subplot()
        (self.data,) = ax.plot([], [], linewidth=3, alpha=0.5, label="data")
        (self.fitted,) = ax.plot([], [], "--", label="fit")
        ax.set(xlabel="x", ylabel="y")
        self.title = ax.set_title("", fontsize="small")
        self.name = fig.suptitle("", fontsize="medium", y=0.97) if named else None
        self.legend = ax.legend()
        moving = [self.data, self.fitted, *ax.spines.values(), self.title, self.legend]
        super().__init__(fig, moving + ([self.name] if named else []))

    def draw(self, x, y, fitted, target: str, run_name: str | None, title: list[str]) -> Figure:
        s = _every(len(x))
        self.data.set_data(x[s], y[s])
        _relabel(self.legend, 0, self.data, f"{target}(x)")
        self.fitted.set_data(x[s], fitted[s])
        self.ax.relim()
        self.ax.autoscale_view()
        self.title.set_text("\n".join(title))
        if self.name is not None:
            self.name.set_text(run_name)
        return self.render()


def _relabel(legend, i: int, line: Line2D, label: str) -> None:
    """Give `line` and its legend entry (the i-th) `label`."""
    line.set_label(label)
    legend.get_texts()[i].set_text(label)


def fit_figure(
    x: np.ndarray,
    y: np.ndarray,
    fitted: np.ndarray,
    target: str,
    run_name: str | None = None,
    formula: str = "",
    reuse: bool = False,
) -> Figure:
    """The data and the fitted model's y (`fitted`, at each x) over the same x, titled with the
    run's name and the fitted function (`formula`: the model's `describe`). `reuse`: draw on
    this process's figure of that layout (see above)."""
    title = textwrap.wrap(formula, MAX_TITLE, break_long_words=False) or [""]
    drawn = _kept(_Fit, reuse, len(title), bool(run_name))
    return drawn.draw(x, y, fitted, target, run_name, title)


class _Loss(_Layered):
    """loss.png: the loss against step on a log scale, over the least-squares optimum."""

    def __init__(self, with_optimum: bool):
        fig = Figure(figsize=(6, 4))
        fig.subplots_adjust(**MARGINS)
        self.ax = ax = fig.add_subplot()
        (self.line,) = ax.plot([], [], label="loss")
        self.floor = self.legend = None
        if with_optimum:
            self.floor = ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1.2, label="-")
            self.legend = ax.legend(loc="upper right", fontsize="small")
        ax.set(xlabel="step", ylabel="loss (sum of squared errors)", yscale="log")
        ax.yaxis.set_major_formatter(_powers_of_ten)
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # "30" where "3×10¹" was
        ax.grid(True, which="both", alpha=0.3)
        lines = [self.line] + ([self.floor] if with_optimum else [])
        legend = [self.legend] if with_optimum else []
        super().__init__(fig, lines + list(ax.spines.values()) + legend)

    def draw(self, steps, losses, optimal_loss: float | None) -> Figure:
        s = _every(len(losses))
        self.line.set_data(steps[s], losses[s])
        if self.floor is not None:
            self.floor.set_ydata([optimal_loss, optimal_loss])
            _relabel(self.legend, 1, self.floor, f"least-squares optimum {optimal_loss:.6g}")
        self.ax.relim()
        self.ax.autoscale_view()
        _whole_decades(self.ax)
        return self.render()


def _whole_decades(ax) -> None:
    """A log y-axis spanning a decade or more ends on whole decades, with minor ticks at 2 and
    5: runs of a sweep then share one axis (MLflow shows their loss.png alike, and each draws
    only its lines, see _Layered), and the grid stays readable over many decades. A narrower
    view keeps its autoscaled ends and every minor tick, or it could show none."""
    low, high = ax.get_ylim()
    if 0 < low and high <= 1e300 and high / low >= 10:  # a decade more stays finite
        low, high = 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))
        if math.isfinite(high) and low > 0:
            ax.set_ylim(low, high, auto=None)  # None: the next run autoscales again
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            return
    ax.yaxis.set_minor_locator(LogLocator(subs="auto"))


def loss_figure(
    steps: np.ndarray,
    losses: np.ndarray,
    optimal_loss: float | None = None,
    reuse: bool = False,
) -> Figure:
    """Sum of squared errors against step, log scale, over the least-squares optimum's level:
    the plateau the curve reaches is that floor, not a stalled fit. `reuse`: as fit_figure's."""
    marked = optimal_loss is not None and optimal_loss > 0
    return _kept(_Loss, reuse, marked).draw(steps, losses, optimal_loss if marked else None)


SUPERSCRIPTS = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def _powers_of_ten(value: float, _position) -> str:
    """`10⁴` as plain text: the default `$10^{4}$` goes through mathtext, whose parse costs a
    few ms a label on every new figure (its cache lives with the figure's renderer)."""
    if not (math.isfinite(value) and value > 0):
        return f"{value:.4g}"
    exponent = round(math.log10(value))
    if not math.isclose(value, 10.0**exponent):
        return f"{value:.4g}"
    return "10" + str(exponent).translate(SUPERSCRIPTS)


class _Frames:
    """The fit frames: one small Agg canvas holding what does not change within a run (axes,
    data, legend) as a background, kept while the data stay the same (a sweep's jobs share it);
    each frame redraws only the run's name, the fitted line and the step over a copy of it
    (~1 ms a frame). No tick labels."""

    def __init__(self):
        self.figure = fig = Figure(figsize=(4, 2.7), dpi=80)
        self.canvas = FigureCanvasAgg(fig)
        self.rc = matplotlib.rcParams.copy()  # the settings it was built with
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.04, top=0.88)
        self.ax = ax = fig.add_subplot()
        (self.data,) = ax.plot([], [], linewidth=3, alpha=0.5, label="data")
        (self.fitted,) = ax.plot([], [], "--", color="C1", label="fit", animated=True)
        # No tick labels: text is most of a frame's cost, and fit.png carries the numbers.
        ax.tick_params(labelleft=False, labelbottom=False)
        self.legend = ax.legend(loc="upper left", fontsize="x-small")
        self.name = fig.suptitle("", fontsize="small", animated=True)
        self.step = ax.text(0.98, 0.04, "", transform=ax.transAxes, ha="right", animated=True)
        self.drawn, self.background = None, None  # the data under `background`

    def draw(self, x, y, target: str, snapshots, run_name: str) -> list[tuple[int, np.ndarray]]:
        s = slice(None, None, max(1, len(x) // 300))
        xs, ys = x[s], y[s]
        drawn = (target, xs.tobytes(), ys.tobytes())
        if drawn != self.drawn:
            self.data.set_data(xs, ys)
            _relabel(self.legend, 0, self.data, f"{target}(x)")
            low, high = float(ys.min()), float(ys.max())
            pad = 0.25 * (high - low or 1.0)
            self.ax.set(xlim=(xs[0], xs[-1]), ylim=(low - pad, high + pad))
            self.canvas.draw()
            self.drawn, self.background = drawn, self.canvas.copy_from_bbox(self.figure.bbox)
        self.name.set_text(run_name)
        frames = []
        for step, predicted in snapshots:
            self.canvas.restore_region(self.background)
            self.fitted.set_data(xs, np.asarray(predicted)[s])
            self.step.set_text(f"step {step}")
            self.figure.draw_artist(self.name)
            self.ax.draw_artist(self.fitted)
            self.ax.draw_artist(self.step)
            frames.append((step, np.asarray(self.canvas.buffer_rgba())[..., :3].copy()))
        return frames


def fit_frames(
    x: np.ndarray,
    y: np.ndarray,
    target: str,
    snapshots: list[tuple[int, np.ndarray]],
    run_name: str,
    reuse: bool = False,
) -> list[tuple[int, np.ndarray]]:
    """(step, RGB image (h, w, 3) uint8) of the fit at each (step, prediction) snapshot, the
    prediction being the model's values at every x (so any model draws the same way).

    Cheap enough to log with every run (see _Frames). The y-range is the data's, fixed, so the
    frames compare and an early wild polynomial leaves the view instead of rescaling it.
    `reuse`: as fit_figure's.
    """
    return _kept(_Frames, reuse).draw(x, y, target, snapshots, run_name)


def run_figures(
    x: np.ndarray,
    y: np.ndarray,
    fitted: np.ndarray,
    target: str,
    run_name: str,
    formula: str,
    steps: np.ndarray,
    losses: np.ndarray,
    optimal_loss: float | None,
    snapshots: list[tuple[int, np.ndarray]],
) -> dict:
    """What a run logs as figures, drawn on this process's kept figures: fit.png and loss.png
    as PNG bytes, and the fit frames as (step, RGB pixels) under "frames" (gdfit.drawer
    calls this in a process of its own)."""
    fit = fit_figure(x, y, fitted, target, run_name, formula, reuse=True)
    loss = loss_figure(steps, losses, optimal_loss, reuse=True)
    return {
        "fit.png": png_of(fit),
        "loss.png": png_of(loss),
        "frames": fit_frames(x, y, target, snapshots, run_name, reuse=True) if snapshots else [],
    }


def png_of(figure: Figure) -> bytes:
    """`figure` as PNG bytes (see gdfit.png). A run's figure is taken as its last render left it;
    any other, or one changed since, is drawn first (as savefig draws, without its savefig.*
    settings: gdfit's figures set their own size and colours)."""
    canvas = figure.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(figure)
    if figure not in _layered or figure.stale:
        canvas.draw()
    return png.encode(np.asarray(canvas.buffer_rgba()), figure.dpi)


def save_png(figure: Figure, path) -> None:
    with open(path, "wb") as out:
        out.write(png_of(figure))


# ---- many runs: their loss curves on one plot, and results against a swept setting ----


@dataclass
class Curve:
    """One run's loss curve as the comparison draws it."""

    parts: tuple[str, ...]  # what sets this run apart, short: ("tensor", "lr=1e-6")
    steps: list[int]
    losses: list[float]
    ended: str = ""  # empty when the run finished; else why not: "diverged at step 3", "failed"
    value: float | None = None  # the swept number that colours it on a colour scale
    group: str = ""  # with a colour scale: the category that picks its line style ("adam")

    @property
    def label(self) -> str:
        return ", ".join(self.parts)


def coinciding(curves: list[Curve]) -> list[list[int]]:
    """Groups (indices, 2 or more) of curves that lie on top of each other at every step."""
    logs = []
    for c in curves:
        with np.errstate(all="ignore"):
            logs.append(np.log10(np.asarray(c.losses, dtype=float)))

    def same(i: int, j: int) -> bool:
        if curves[i].steps != curves[j].steps or not curves[i].steps:
            return False
        if not abs(logs[i][-1] - logs[j][-1]) < COINCIDE_DEX:  # cheap test first
            return False
        return bool(np.nanmax(np.abs(logs[i] - logs[j])) < COINCIDE_DEX)

    groups: list[list[int]] = []
    for i in range(len(curves)):
        group = next((g for g in groups if same(g[0], i)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return [g for g in groups if len(g) > 1]


def _y_range(curves: list[Curve], optimum: float | None) -> tuple[float, float] | None:
    """Log-axis limits set by the runs that finished (all runs when none did) and the optimum."""
    finished = [c for c in curves if not c.ended] or curves
    values = [np.asarray(c.losses, dtype=float) for c in finished] + [np.array([optimum or 0.0])]
    values = np.concatenate(values)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return None
    low, high = math.log10(values.min()), math.log10(values.max())
    pad = 0.05 * max(high - low, 0.2)
    return 10 ** (low - pad), 10 ** (high + pad)


def _mark_end(ax, curve: Curve, colour, top: float | None) -> None:
    """An x where a run that did not finish stopped; a ^ on the top edge when it stopped
    above the drawn range (a diverged run does not stretch the axis)."""
    if not curve.steps:
        return
    step, last = curve.steps[-1], curve.losses[-1]
    if top is not None and not (math.isfinite(last) and last <= top):
        where = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot([step], [0.985], "^", color=colour, markersize=6, transform=where, clip_on=False)
    else:
        ax.plot([step], [last], "x", color=colour, markersize=7, markeredgewidth=2)


def comparison_figure(
    curves: list[Curve],
    colour_by: str = "",
    style_by: str = "",
    title: str = "",
    optimum: float | None = None,
) -> Figure:
    """Several runs' loss curves on one log-scale plot, over the least-squares `optimum`.

    Up to MAX_LEGEND runs (or with no `colour_by`): a colour and a legend entry each. More, with
    `colour_by` naming the swept number in each curve's `value`: a colour scale with a colour
    bar, line styles by `style_by` (each curve's `group`), and a legend of styles only.
    Runs that did not finish are drawn thin and marked where they stopped, and do not set the
    y-range; curves that coincide get offset markers (and dashes) and say so in the legend.
    """
    scale = (
        bool(colour_by) and len(curves) > MAX_LEGEND and any(c.value is not None for c in curves)
    )
    together = {i: g for g in coinciding(curves) for i in g}
    labels = [_legend_text(curves, i, together) for i in range(len(curves))]
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.set(xlabel="step", ylabel="loss (sum of squared errors)", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    limits = _y_range(curves, optimum)
    styles = {
        g: OFFSETS[k % len(OFFSETS)] for k, g in enumerate(dict.fromkeys(c.group for c in curves))
    }
    if scale:
        colours, norm = _colour_scale([c.value for c in curves])
    else:
        colours = [f"C{k % 10}" for k in range(len(curves))]
    handles = []
    for i, c in enumerate(curves):
        s = _every(len(c.steps))
        dashes = styles[c.group] if scale else (0, (2, 2)) if c.ended else (0, ())
        kwargs = {"color": colours[i], "linewidth": 0.9 if c.ended else 1.6}
        if i in together:  # markers (and, in a legend, dashes) offset per member
            rank = together[i].index(i)
            dashes = dashes if scale else OFFSETS[rank % len(OFFSETS)]
            kwargs |= {
                "marker": MARKERS[rank % len(MARKERS)],
                "markevery": (rank / (len(together[i]) + 1) / 6, 1 / 6),
                "markersize": 5,
                "markerfacecolor": "none",
            }
        line = ax.plot(c.steps[s], c.losses[s], linestyle=dashes, label=labels[i], **kwargs)[0]
        handles.append(line)
        if c.ended:
            _mark_end(ax, c, colours[i], limits[1] if limits else None)
    if optimum is not None and optimum > 0:
        label = f"least-squares optimum {optimum:.6g}"
        handles.append(ax.axhline(optimum, color="0.35", ls=":", lw=1.2, label=label))
    if limits:
        ax.set_ylim(*limits)
    if scale:
        fig.colorbar(_mappable(norm), ax=ax, label=colour_by, pad=0.01)
        handles = _style_handles(curves, styles, style_by, together) + handles[len(curves) :]
    if handles:
        # Right of the axes, where the layout keeps it inside the canvas; the canvas widens
        # with it (~0.064 in a character at this font size) so the axes keep their width.
        fig.legend(handles=handles, loc="outside right upper", fontsize="small")
        longest = max(len(h.get_label()) for h in handles)
        fig.set_figwidth(6.5 + 0.6 + 0.064 * longest + (0.9 if scale else 0))
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def _legend_text(curves: list[Curve], i: int, together: dict[int, list[int]]) -> str:
    """`tensor, lr=1e-6 (diverged at step 3; coincides with numpy)`: a member of a coinciding
    group names the group's first curve by what sets that one apart; at most MAX_LABEL long."""
    notes = [curves[i].ended] if curves[i].ended else []
    group = together.get(i, [i])
    if group[0] != i:
        notes.append(f"coincides with {_apart(curves[i], curves[group[0]])}")
    text = curves[i].label + (f" ({'; '.join(notes)})" if notes else "")
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


def _colour_scale(values):
    """Colours from viridis for the swept values; a log scale when they span a decade."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    positive = bool(known) and min(known) > 0
    if positive and max(known) / min(known) >= 10:
        norm = LogNorm(min(known), max(known))
    else:
        norm = Normalize(min(known, default=0), max(known, default=1))
    mappable = _mappable(norm)
    return [mappable.to_rgba(v) if v is not None else "0.5" for v in values], norm


def _mappable(norm):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap="viridis")


def _style_handles(curves, styles, style_by, together) -> list[Line2D]:
    """Legend entries for what a colour scale leaves unsaid: line styles, stops, coincidences."""
    handles = []
    if style_by and len(styles) > 1:
        for group, dashes in styles.items():
            handles.append(Line2D([], [], color="0.3", linestyle=dashes, label=group))
    stopped = [c for c in curves if c.ended]
    diverged = sum(c.ended.startswith("diverged") for c in stopped)
    for n, what in ((diverged, "diverged"), (len(stopped) - diverged, "failed or stopped")):
        if n:
            label = f"{what} ({n} run{'s' * (n > 1)}), marked where it stopped (^: off the top)"
            handles.append(Line2D([], [], color="0.3", marker="^", lw=0.9, label=label))
    if together:
        n = len(together)
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="none",
                ls="none",
                label=f"marked: coincides with another run ({n} runs)",
            )
        )
    return handles


def _apart(curve: Curve, other: Curve) -> str:
    """`other` by what it does not share with `curve`: `numpy` beside `tensor, lr=1e-6`."""
    return ", ".join(p for p in other.parts if p not in curve.parts) or other.label


@dataclass
class Series:
    """Runs that differ only in the swept setting: one line of a versus figure."""

    label: str  # the other settings they share, short: "tensor"; empty when nothing else varies
    finished: list[tuple[float, float, float | None]] = field(default_factory=list)  # x, loss, gap
    stopped: list[float] = field(default_factory=list)  # x of runs that diverged or failed


def versus_figure(setting: str, series: list[Series], optimum: float | None = None) -> Figure:
    """Final loss and its gap to the least-squares optimum against a swept setting, side by
    side; x on a log scale when the setting spans a decade or more. Runs with no final loss
    (diverged, failed) are marked x on the top edge at their setting."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    loss_ax, gap_ax = fig.subplots(1, 2, sharex=True)
    xs = [x for s in series for x in [p[0] for p in s.finished] + s.stopped]
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        loss_ax.set_xscale("log")
    many = len(series) > MAX_LEGEND
    handles = []
    for k, s in enumerate(sorted(series, key=lambda s: s.label)):
        # A colour and a hollow marker shape each, so series that coincide still show.
        colour = "C0" if many else f"C{k % 10}"
        look = {"color": colour, "marker": "o", "ms": 5}
        if not many:  # later series hollow and larger, so a point under a point still shows
            look |= {"marker": MARKERS[k % len(MARKERS)], "ms": 5 + 1.5 * (k % 4)}
            look |= {"markerfacecolor": "none"} if k else {}
        points = sorted(s.finished)
        gaps = [(x, gap) for x, _, gap in points if gap is not None]
        # Only non-empty lines: an empty line with markers claims the canvas' corner as its
        # extent, and the constrained layout then squeezes the axes to nothing.
        if points:
            x, loss, _ = np.array(points, dtype=float).T
            loss_ax.plot(x, loss, **look)
        if gaps:
            gap_ax.plot(*np.array(gaps, dtype=float).T, **look)
        for ax in (loss_ax, gap_ax) if s.stopped else ():
            top = blended_transform_factory(ax.transData, ax.transAxes)
            ax.plot(
                s.stopped,
                [0.96] * len(s.stopped),
                "x",
                color=colour,
                ms=7,
                mew=2,
                ls="none",
                transform=top,
                clip_on=False,
            )
        if s.label and not many:
            handles.append(Line2D([], [], **look, label=s.label))
    if optimum is not None and optimum > 0:
        label = f"least-squares optimum {optimum:.6g}"
        handles.append(loss_ax.axhline(optimum, color="0.35", ls=":", lw=1.2, label=label))
    if any(s.stopped for s in series):
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="x",
                mew=2,
                ls="none",
                label="diverged or failed (no final loss)",
            )
        )
    stopped = any(s.stopped for s in series)
    losses = [p[1] for s in series for p in s.finished] + ([optimum] if optimum else [])
    _y_axis(loss_ax, losses, stopped)
    _y_axis(gap_ax, [p[2] for s in series for p in s.finished if p[2] is not None], stopped)
    loss_ax.set(xlabel=setting, ylabel="final loss (sum of squared errors)")
    gap_ax.set(xlabel=setting, ylabel="loss gap (final - least-squares optimum)")
    for ax in (loss_ax, gap_ax):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"final loss against {setting}" + (f" ({len(series)} series)" if many else ""))
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return fig


def _y_axis(ax, values: list[float], headroom: bool) -> None:
    """A log y-axis when every value is positive (a gap of exactly 0 stays linear), at least a
    decade tall so that values equal to a few digits do not fill it with one repeated tick;
    with `headroom`, the top eighth is left to the marks of runs that stopped."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return
    if min(values) > 0:
        ax.set_yscale("log")
        low, high = math.log10(min(values)), math.log10(max(values))
        middle, half = (low + high) / 2, max((high - low) / 2 * 1.1, 0.5)
        low, high = middle - half, middle + half
        if headroom:
            high = low + (high - low) / 0.88
        ax.set_ylim(10**low, 10**high)
    elif headroom:
        low, high = ax.get_ylim()
        ax.set_ylim(low, low + (high - low) / 0.88)

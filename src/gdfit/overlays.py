"""The figures of many runs: their loss curves on one plot, and their final loss against a
swept setting. Built on matplotlib's object API (no pyplot, no global state), with the
constrained layout, which keeps legends, colour bars and labels inside the canvas whatever
they hold. What the curves are called comes from gdfit.comparisons.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from gdfit.digits import short_value
from gdfit.plots import every

MAX_LEGEND = 10  # runs drawn one colour each with a legend; more get a colour scale
MAX_LABEL = 110  # characters of a legend entry (one column under the axes holds ~130)
OFFSETS = [(0, ()), (0, (5, 3)), (0, (1, 2)), (0, (6, 2, 1, 2))]  # solid, dashed, dotted, dash-dot
MARKERS = ["o", "s", "^", "D", "v", "P"]
COINCIDE_DEX = 1e-3  # curves within 0.23% of each other at every step cannot be told apart


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
    parts = [np.asarray(c.losses, dtype=float) for c in finished] + [np.array([optimum or 0.0])]
    values = np.concatenate(parts)
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
        s = every(len(c.steps))
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
    if _wide_steps(curves):
        # Runs of 2,000 and 30,000 steps: on a linear axis the short ones would fill its first
        # few percent. Linear from 0 to 1, logarithmic beyond.
        ax.set_xscale("symlog", linthresh=1, linscale=0.3)
        ax.set_xlim(left=0)
        ax.set_xlabel("step (log scale)")
    if handles:
        _legend_below(fig, handles)
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def _wide_steps(curves: list[Curve]) -> bool:
    """Whether the runs' lengths differ tenfold or more."""
    ends = [c.steps[-1] for c in curves if c.steps and c.steps[-1] > 0 and not c.ended]
    return bool(ends) and max(ends) >= 10 * min(ends)


def _legend_below(fig: Figure, handles: list) -> None:
    """The legend under the axes, in two columns when its entries are short: the axes keep the
    canvas' width, and the canvas grows by the legend's rows (~0.2 in each)."""
    longest = max(len(str(h.get_label())) for h in handles)
    columns = 2 if longest <= 60 and len(handles) > 3 else 1
    rows = -(-len(handles) // columns)
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize="small")
    fig.set_figheight(fig.get_figheight() + 0.2 * rows + 0.1)


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
    norm: Normalize
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
        look: dict[str, Any] = {"color": colour, "marker": "o", "ms": 5}
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
    if xs:
        _x_axis(loss_ax, xs)  # shared with gap_ax
    loss_ax.set(xlabel=setting, ylabel="final loss (sum of squared errors)")
    gap_ax.set(xlabel=setting, ylabel="loss gap (final - least-squares optimum)")
    for ax in (loss_ax, gap_ax):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"final loss against {setting}" + (f" ({len(series)} series)" if many else ""))
    if handles:
        _legend_below(fig, handles)
    return fig


def _y_axis(ax, values: list[float], headroom: bool) -> None:
    """A log y-axis when the values are positive and span a decade or more (gaps from 1e-8 to
    1); else a linear one around them (final losses of 8.82 to 9.08 fill it rather than lie
    flat on a decade). With `headroom`, the top eighth is left to the marks of runs that
    stopped."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return
    low, high = min(values), max(values)
    if low > 0 and high / low >= 10:
        ax.set_yscale("log")
        low, high = math.log10(low), math.log10(high)
        pad = 0.05 * (high - low)
        low, high = low - pad, high + pad
        if headroom:
            high = low + (high - low) / 0.88
        ax.set_ylim(10**low, 10**high)
        return
    pad = 0.08 * (high - low) or 0.01 * abs(high) or 1.0
    low, high = low - pad, high + pad
    if headroom:
        high = low + (high - low) / 0.88
    ax.set_ylim(low, high)
    ax.yaxis.get_major_formatter().set_useOffset(False)  # 8.82, not 0.02 + 8.8


def _x_axis(ax, xs: list[float]) -> None:
    """Ticks at the swept values themselves when there are few, written short (`2e-6`), and
    no offset or scale factor that the reader must apply."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    distinct = sorted(set(xs))
    if len(distinct) <= 8:
        ax.xaxis.set_major_locator(FixedLocator(distinct))
        ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short_value(repr(float(v)))))

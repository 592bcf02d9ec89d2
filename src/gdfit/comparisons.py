"""The figures that compare runs (comparison.png, final_loss_vs_<key>.png), and what they call
each run: the settings that set it apart, in short (`tensor, lr=1e-6`).

Shared by a sweep's parent, `gdfit-compare --out` and gdfit.runs.
"""

import math

from gdfit import overlays
from gdfit import readback as stored
from gdfit.digits import value_texts
from gdfit.readback import swept_keys

SELF_NAMED = {"name", "dtype", "target"}  # values that say what they are: adam, float32, sin
NOT_SETTINGS = {"train.log_every"}  # varies the console only, never the result
STYLE_MAX = 4  # a category with more values than this is not told apart by line style


def label_keys(runs) -> list[str]:
    """The swept keys whose value varies among the runs that set it and does not follow from an
    option's name; names first.

    In a sweep over sgd, momentum and adam, `optimizer.momentum` is set by one run only and
    each optimizer keeps its own default lr: the optimizer's name says both, so both are left
    out."""
    keys = [k for k in swept_keys(runs) if len(set(_set_values(runs, k))) > 1]
    keys = [k for k in keys if k not in NOT_SETTINGS]
    keys = [k for k in keys if not _implied(runs, k, keys)]
    return sorted(keys, key=lambda k: (_leaf(k) != "name", _leaf(k) not in SELF_NAMED, k))


def _implied(runs, key: str, keys: list[str]) -> bool:
    """Whether `key` follows from its group's option name in every run, as backend.dtype does
    from backend.name when each backend keeps its own default dtype."""
    group, _, leaf = key.rpartition(".")
    name = f"{group}.name"
    if leaf == "name" or name not in keys:
        return False
    seen: dict[str | None, str | None] = {}
    return all(
        seen.setdefault(r.data.params.get(name), r.data.params.get(key)) == r.data.params.get(key)
        for r in runs
    )


def _set_values(runs, key: str) -> list[str]:
    return [v for r in runs if (v := r.data.params.get(key)) not in (None, "", "None")]


def _leaf(key: str) -> str:
    return key.rpartition(".")[2]


def short_key(key: str, keys: list[str]) -> str:
    """`lr` for optimizer.lr (unless another key also ends in `.lr`), `optimizer` for
    optimizer.name."""
    group, _, leaf = key.rpartition(".")
    if leaf == "name" and group:
        return group
    return leaf if sum(_leaf(k) == leaf for k in keys) == 1 else key


def numeric(runs, key: str) -> bool:
    values = _set_values(runs, key)
    try:
        return bool(values) and all(math.isfinite(float(v)) for v in values)
    except ValueError:
        return False


class Labeller:
    """Short text for what sets each run apart: `tensor, lr=1e-6`."""

    def __init__(self, runs, keys: list[str]):
        self.keys = keys
        self.short = {k: short_key(k, keys) for k in keys}
        self.texts = {k: value_texts(_set_values(runs, k)) for k in keys}

    def part(self, run, key: str) -> str | None:
        value = run.data.params.get(key)
        if value in (None, "", "None"):
            return None
        text = self.texts[key][value]
        return text if _leaf(key) in SELF_NAMED else f"{self.short[key]}={text}"

    def parts(self, run, keys: list[str] | None = None) -> tuple[str, ...]:
        found = (self.part(run, k) for k in (self.keys if keys is None else keys))
        return tuple(p for p in found if p)


def comparison(uri: str, runs):
    """The overlay of every run's loss curve, told apart by what varies: a legend of short
    labels for a few runs; for many, a colour scale over the swept number (the learning rate
    first), line styles for a category with few values, and a title naming what else varies."""
    keys = label_keys(runs)
    labeller = Labeller(runs, keys)
    numbers = [k for k in keys if numeric(runs, k) and k not in NOT_SETTINGS]
    colour = next((k for k in numbers if k == "optimizer.lr"), None) or max(
        numbers, key=lambda k: len(set(_set_values(runs, k))), default=None
    )
    style = next(
        (k for k in keys if k not in numbers and len(set(_set_values(runs, k))) <= STYLE_MAX),
        None,
    )
    curves = []
    for index, r in enumerate(runs):
        curve = stored.loss_curve(uri, r.info.run_id, r.info.artifact_uri)
        value = r.data.params.get(colour) if colour else index + 1
        curves.append(
            overlays.Curve(
                parts=labeller.parts(r) or (r.info.run_name,),
                steps=curve.steps.tolist(),
                losses=curve.losses.tolist(),
                ended=stored.ended(r),
                value=float(value) if value not in (None, "", "None") else None,
                group=(labeller.part(r, style) or "") if style else "",
            )
        )
    title = f"loss of {len(runs)} runs"
    if len(runs) <= overlays.MAX_LEGEND:
        return overlays.comparison_figure(curves, title=title, optimum=optimum(runs))
    rest = [short_key(k, keys) for k in keys if k not in (colour, style)]
    if rest:
        title += "; also varying: " + ", ".join(rest[:4]) + (", ..." if len(rest) > 4 else "")
    return overlays.comparison_figure(
        curves,
        colour_by=short_key(colour, keys) if colour else "run, in the order listed",
        style_by=short_key(style, keys) if style else "",
        title=title,
        optimum=optimum(runs),
    )


def versus_figures(runs) -> dict:
    """`final_loss_vs_<key>.png` -> the figure of final loss and loss gap against each numeric
    setting the runs sweep (optimizer.lr, train.steps, data.n_points, ...), one series per
    combination of the other varying settings. A key is left out when no series holds two of
    its values (in a sweep over optimizers, each optimizer's own lr is not a sweep of lr)."""
    keys = label_keys(runs)
    labeller = Labeller(runs, keys)
    figures = {}
    for key in keys:
        if key in NOT_SETTINGS or not numeric(runs, key):
            continue
        others = [k for k in keys if k != key]
        series: dict[tuple[str, ...], overlays.Series] = {}
        for r in runs:
            value = r.data.params.get(key)
            if value in (None, "", "None"):
                continue
            parts = labeller.parts(r, others)
            points = series.setdefault(parts, overlays.Series(", ".join(parts)))
            m = r.data.metrics
            if r.info.status == "FINISHED" and "final_loss" in m:
                points.finished.append((float(value), m["final_loss"], m.get("loss_gap")))
            else:
                points.stopped.append(float(value))
        swept = any(len({p[0] for p in s.finished} | set(s.stopped)) > 1 for s in series.values())
        if swept:
            name = short_key(key, keys)
            figures[f"final_loss_vs_{key}.png"] = overlays.versus_figure(
                name, list(series.values()), optimum(runs)
            )
    return figures


def optimum(runs) -> float | None:
    """The least-squares optimum's loss when every finished run shares one (same data)."""
    found = [r.data.metrics["optimal_loss"] for r in runs if "optimal_loss" in r.data.metrics]
    if found and max(found) - min(found) <= 1e-9 * abs(max(found)):
        return found[0]
    return None

"""A table of runs: the settings that differ between them and how each fit ended.

Shared by the sweep's parent run (summary.csv, comparison.png, final_loss_vs_<key>.png),
`gdfit-compare` and gdfit.runs, which also share `select`, the choice of runs to read back.
"""

import csv
import io
import math

from gdfit import plots, tracking
from gdfit.errors import UsageError

RESULT_COLUMNS = ["status", "final_loss", "loss_gap"]


def swept_keys(runs) -> list[str]:
    """Params whose values differ between the runs (run names, tracking and the resume of a
    sweep aside)."""
    keys = sorted({k for r in runs for k in r.data.params})
    differ = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    return [k for k in differ if not k.startswith(("tracking.", "sweep."))]


def coefficient_keys(runs) -> list[str]:
    found = {k for r in runs for k in r.data.metrics if k.startswith("coef_")}
    return sorted(found, key=lambda k: int(k.split("_")[1]))


def rows(runs) -> tuple[list[str], list[list]]:
    """(header, one row per run): id, name, swept settings, results, coefficients, seconds."""
    swept, coefs = swept_keys(runs), coefficient_keys(runs)
    header = ["run_id", "run_name", *swept, *RESULT_COLUMNS, *coefs, "train_seconds"]
    table = []
    for r in runs:
        m = r.data.metrics
        table.append(
            [
                r.info.run_id,
                r.info.run_name,
                *(r.data.params.get(k, "") for k in swept),
                r.info.status,
                m.get("final_loss", ""),
                m.get("loss_gap", ""),
                *(m.get(k, "") for k in coefs),
                m.get("train_seconds", ""),
            ]
        )
    return header, table


def to_csv(header: list[str], table: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    return out.getvalue()


# ---- what sets each run apart, in short: the legends and axes of the comparison figures ----

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


def _number(text: str, digits: int) -> str:
    """`1e-6` for "1e-06", `3.51e-6` for "3.5107325971414207e-06", `1e-4` for "0.0001",
    `0.5` for "0.5", `200` for "200"."""
    try:
        return str(int(text))
    except ValueError:
        pass
    value = float(text)
    if value == 0 or 1e-2 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _value_texts(values: list[str]) -> dict[str, str]:
    """Each distinct param value in short form, with as few digits as keep them distinct."""
    distinct = sorted(set(values))
    for digits in range(3, 18):
        texts = {v: _short_value(v, digits) for v in distinct}
        if len(set(texts.values())) == len(distinct):
            return texts
    return {v: v for v in distinct}


def _short_value(text: str, digits: int) -> str:
    if text.startswith("["):  # a list param, logged as JSON: betas=[0.9,0.999]
        inner = text.strip("[]").split(",")
        return "[" + ",".join(_short_value(t.strip(), digits) for t in inner if t.strip()) + "]"
    if text in ("True", "False"):
        return text
    try:
        return _number(text, digits)
    except ValueError:
        return text


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
        self.texts = {k: _value_texts(_set_values(runs, k)) for k in keys}

    def part(self, run, key: str) -> str | None:
        value = run.data.params.get(key)
        if value in (None, "", "None"):
            return None
        text = self.texts[key][value]
        return text if _leaf(key) in SELF_NAMED else f"{self.short[key]}={text}"

    def parts(self, run, keys: list[str] | None = None) -> tuple[str, ...]:
        found = (self.part(run, k) for k in (self.keys if keys is None else keys))
        return tuple(p for p in found if p)


def ended(run) -> str:
    """Empty for a finished run; else how it ended: `diverged at step 3`, `failed`, `killed`."""
    if run.info.status == "FINISHED":
        return ""
    step = run.data.tags.get("gdfit.diverged_at_step")
    return f"diverged at step {step}" if step else run.info.status.lower()


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
        steps, losses = tracking.loss_curve(uri, r.info.run_id, r.info.artifact_uri)
        value = r.data.params.get(colour) if colour else index + 1
        curves.append(
            plots.Curve(
                parts=labeller.parts(r) or (r.info.run_name,),
                steps=steps,
                losses=losses,
                ended=ended(r),
                value=float(value) if value not in (None, "", "None") else None,
                group=(labeller.part(r, style) or "") if style else "",
            )
        )
    title = f"loss of {len(runs)} runs"
    if len(runs) <= plots.MAX_LEGEND:
        return plots.comparison_figure(curves, title=title, optimum=optimum(runs))
    rest = [short_key(k, keys) for k in keys if k not in (colour, style)]
    if rest:
        title += "; also varying: " + ", ".join(rest[:4]) + (", ..." if len(rest) > 4 else "")
    return plots.comparison_figure(
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
        series: dict[tuple[str, ...], plots.Series] = {}
        for r in runs:
            value = r.data.params.get(key)
            if value in (None, "", "None"):
                continue
            parts = labeller.parts(r, others)
            points = series.setdefault(parts, plots.Series(", ".join(parts)))
            m = r.data.metrics
            if r.info.status == "FINISHED" and "final_loss" in m:
                points.finished.append((float(value), m["final_loss"], m.get("loss_gap")))
            else:
                points.stopped.append(float(value))
        swept = any(len({p[0] for p in s.finished} | set(s.stopped)) > 1 for s in series.values())
        if swept:
            name = short_key(key, keys)
            figures[f"final_loss_vs_{key}.png"] = plots.versus_figure(
                name, list(series.values()), optimum(runs)
            )
    return figures


def optimum(runs) -> float | None:
    """The least-squares optimum's loss when every finished run shares one (same data)."""
    found = [r.data.metrics["optimal_loss"] for r in runs if "optimal_loss" in r.data.metrics]
    if found and max(found) - min(found) <= 1e-9 * abs(max(found)):
        return found[0]
    return None


def best(runs):
    """The finished run with the lowest final_loss, or None."""
    done = [
        r
        for r in runs
        if r.info.status == "FINISHED" and math.isfinite(r.data.metrics.get("final_loss", math.inf))
    ]
    return min(done, key=lambda r: r.data.metrics["final_loss"], default=None)


# ---- which runs: what gdfit-compare and gdfit.runs read back ----


def select(uri: str, refs: list[str], parent, experiment, filter_string: str, say):
    """(the runs, the parent's run id or None): the runs gdfit-compare and gdfit.runs show,
    oldest first: those named by `refs` (run ids, id prefixes or run names; a sweep's parent
    stands for its jobs), the jobs of sweep `parent`, or the runs of `experiment` (sweep parents
    left out), the last two narrowed by the MLflow search `filter_string`. `say(how)` is told
    how a run name was resolved ("'x' is run <id>"). UsageError for an unknown run or
    experiment."""

    def resolve(ref: str):
        run, how = tracking.find_run(uri, ref)
        if how:
            say(how)
        return run

    if experiment is not None:
        names = tracking.experiment_names(uri)
        if experiment not in names:
            raise UsageError(
                f"no experiment {experiment!r} in {uri}; "
                f"experiments there: {', '.join(names) or 'none'}"
            )
        return tracking.search_runs(uri, experiment=experiment, filter_string=filter_string), None
    if parent is not None:
        parent_id = resolve(parent).info.run_id
        picked = tracking.search_runs(uri, parent=parent_id, filter_string=filter_string)
        if not picked and not filter_string:
            raise UsageError(f"run {parent_id} has no child runs: it is not a sweep parent")
        return picked, parent_id
    picked, seen = [], set()
    for ref in refs:
        run = resolve(ref)
        members = (
            tracking.search_runs(uri, parent=run.info.run_id)
            if run.data.tags.get("gdfit.sweep") == "true"
            else [run]
        )
        for member in members:
            if member.info.run_id not in seen:
                seen.add(member.info.run_id)
                picked.append(member)
    return picked, None

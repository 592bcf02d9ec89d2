"""Read a set of runs back from MLflow as a table, and overlay their loss curves.

  gdfit-compare --parent RUN         the jobs of one sweep
  gdfit-compare RUN [RUN ...]        runs named directly (a parent: its jobs)
  gdfit-compare --experiment gdfit --filter "params.`backend.name` = 'tensor'"
  gdfit-compare --parent RUN --format csv > runs.csv
  gdfit-compare RUN --figures figs/  each run's fit.png and loss.png, redrawn

RUN is a run id, a unique prefix of one (as git takes commits) or a run name
(the newest run of that name). Rows are sorted best first, unless --sort says
otherwise: by final_loss, or by loss_gap (each run against its own model's
optimum) when the runs fit different models or data.
"""

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from gdfit import comparisons, readback, redraw
from gdfit.digits import value_texts
from gdfit.errors import GdfitError, UsageError, reported_errors
from gdfit.readback import SETTINGS
from gdfit.redaction import redact
from gdfit.store import add_tracking_uri, existing_store

FORMATS = ("table", "csv", "markdown", "json")
# At a narrow terminal these go, in this order, once the settings (and the status) that are the
# same in every run have moved to a line above the table. Nothing that tells runs apart goes.
DROP_ORDER = ("coefficients", "train_seconds")
NOT_FOLDED = ("train.log_every",)  # varies what a run printed, not what it computed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gdfit-compare",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "runs", nargs="*", metavar="RUN", help="runs to compare: id, id prefix or run name"
    )
    parser.add_argument("--parent", metavar="RUN", help="the runs of this sweep's parent run")
    parser.add_argument("--experiment", metavar="NAME", help="the runs of this experiment")
    parser.add_argument(
        "--filter",
        default="",
        metavar="SEARCH",
        help="MLflow search filter on --parent or --experiment runs, e.g. "
        "\"params.`optimizer.name` = 'adam'\"",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--sort",
        default=None,
        metavar="KEY",
        help="column to sort by, lowest first; --sort=-KEY for highest first (default: best "
        "first: by final_loss, or by loss_gap when the runs fit different models or data)",
    )
    add_tracking_uri(parser)
    parser.add_argument(
        "--out", metavar="PATH", help="write the overlay of the loss curves (.png, .pdf or .svg)"
    )
    parser.add_argument(
        "--figures",
        metavar="DIR",
        help="write each run's fit.png and loss.png into DIR/<run name>/, drawn from the store",
    )
    args = parser.parse_args(argv)
    chosen = [bool(args.runs), args.parent is not None, args.experiment is not None]
    if sum(chosen) != 1:
        parser.error("name runs, or give one of --parent RUN or --experiment NAME")
    if args.filter and args.runs:
        parser.error("--filter goes with --parent or --experiment, not with runs named directly")
    return args


# ---- the rows, whatever the format (readback.table) ----


def sort(columns: list[str], rows: list[dict], key: str) -> list[dict]:
    """Rows ordered by `key`, lowest first (highest with a leading '-'); numbers compare as
    numbers; runs without a value (a failed run's final_loss) go last either way."""
    descending = key.startswith("-")
    name = key.removeprefix("-")
    if name not in columns:
        raise UsageError(f"--sort {key}: no such column; choose one of {', '.join(columns)}")
    have = [r for r in rows if _number(r[name]) is not None or isinstance(r[name], str)]
    missing = [r for r in rows if r not in have]
    numeric = all(_number(r[name]) is not None for r in have)
    if numeric:
        have.sort(key=lambda r: _number(r[name]) or 0.0)
    else:
        have.sort(key=lambda r: str(r[name]))
    return (have[::-1] if descending else have) + missing


def _number(v) -> float | None:
    try:
        number = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def text(column: str, value) -> str:
    """A cell as the table and markdown show it: numbers to the digits that tell runs apart."""
    if value is None:
        return ""
    if column == "run_id":
        return value[:8]
    if isinstance(value, float):
        if column == "train_seconds":
            return f"{value:.3f}"
        if column == "loss_gap" or column.startswith("coef_"):
            return f"{value:.3g}"
        return f"{value:.8g}"
    return str(value)


# ---- formats ----


def as_csv(columns: list[str], rows: list[dict]) -> str:
    return readback.to_csv(columns, rows)


def as_json(rows: list[dict]) -> str:
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps([{k: clean(v) for k, v in r.items()} for r in rows], indent=2)


def as_markdown(columns: list[str], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r["run_id"] if c == "run_id" else text(c, r[c]) for c in columns]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


RESULTS = ("run_id", "run_name", "status", "final_loss", "loss_gap", "coefficients")
NAMED = ("model", "backend", "optimizer")  # settings whose values say what they are: adam


def table_cells(columns: list[str], rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Titles and cells, the coefficients folded into one column, each setting's values as
    short as keeps them apart (`3.51e-6` for 3.5107325971414207e-06)."""
    coefs = [c for c in columns if c.startswith("coef_")]
    titles = [c for c in columns if c not in coefs and c not in ("train_seconds", "ended")]
    if coefs:
        titles.append("coefficients")
    titles.append("train_seconds")
    settings = [t for t in titles if _is_setting(t)]
    short = {t: value_texts([r[t] for r in rows if r[t] is not None]) for t in settings}
    cells = []
    for r in rows:
        line = [
            short[c].get(r[c], "") if c in short and r[c] is not None else text(c, r[c])
            for c in titles
            if c in r
        ]
        if r.get("diverged"):  # a result of a search, not a failure (readback.diverged)
            line[titles.index("status")] = "diverged"
        if coefs:
            shown = [f"{r[c]:.4g}" for c in coefs if r[c] is not None]
            line.insert(len(line) - 1, "[" + ", ".join(shown) + "]" if shown else "")
        cells.append(line)
    return titles, cells


def _is_setting(title: str) -> bool:
    return title not in RESULTS and title != "train_seconds"


def fit_to_width(titles, cells, width: int) -> tuple[list[str], list[list[str]], list[str], list]:
    """Make the table fit `width`: first the settings (and the status) that are the same in
    every run move out (returned as `same`, to print above the table), then DROP_ORDER goes,
    then the settings that differ fold into one column, `settings` ("adam, lr=1e-3, eps=1e-8"),
    which wraps as the run names do. What tells the runs apart is never dropped. Returns
    (titles, cells, dropped column names, same)."""
    dropped, same = [], []

    def natural(i: int) -> int:
        return max(len(titles[i]), *(len(row[i]) for row in cells))

    def total(keep: list[int]) -> int:
        return sum(natural(i) for i in keep) + GAP * (len(keep) - 1)

    keep = list(range(len(titles)))
    movable = [i for i, t in enumerate(titles) if _is_setting(t) or t == "status"]
    if len(cells) > 1:
        for i in movable:
            if total(keep) <= width:
                break
            if len({row[i] for row in cells}) == 1:
                keep.remove(i)
                same.append((titles[i], cells[0][i]))
    for i in [titles.index(t) for t in DROP_ORDER if t in titles]:
        if total(keep) <= width:
            break
        keep.remove(i)
        dropped.append(titles[i])
    shown, rows = [titles[i] for i in keep], [[row[i] for i in keep] for row in cells]
    settings = [i for i, t in enumerate(shown) if _is_setting(t)]
    if total(keep) <= width or len(settings) < 2:
        return shown, rows, dropped, same
    folded = []
    for row in rows:
        parts = [_part(shown[i], row[i]) for i in settings if row[i] and shown[i] not in NOT_FOLDED]
        folded.append(", ".join(parts))
    at = settings[0]
    shown = [t for i, t in enumerate(shown) if i not in settings]
    shown.insert(at, "settings")
    rows = [[c for i, c in enumerate(row) if i not in settings] for row in rows]
    for row, text_ in zip(rows, folded, strict=True):
        row.insert(at, text_)
    return shown, rows, dropped, same


def _part(title: str, value: str) -> str:
    """A setting in the folded column: `adam`, `lr=1e-3`, `momentum=0.9`, `model.seed=0`
    (a leaf that is also a short title keeps its group)."""
    leaf = title.rpartition(".")[2]
    return value if title in NAMED else f"{title if leaf in SETTINGS else leaf}={value}"


GAP = 2  # spaces between columns
WRAPPING = ("run_name", "settings")  # the columns that wrap when the table is still too wide
MIN_SETTINGS = 16  # the folded settings' width below which run names wrap too


def print_table(columns: list[str], rows: list[dict], ranking: str | None = None) -> None:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=240)  # piped or captured: no reason to squeeze the table
    titles, cells = table_cells(columns, rows)
    titles, cells, dropped, same = fit_to_width(titles, cells, console.width)
    if ranking:
        console.print(f"ranked {ranking}", markup=False)
    if same:
        console.print("same in every run: " + ", ".join(f"{k} {v}" for k, v in same), markup=False)
    out = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        padding=(0, GAP - 1),
        collapse_padding=True,
    )
    numeric = {"final_loss", "loss_gap", "train_seconds", "lr", "seed"}
    widths = [max(len(t), *(len(row[i]) for row in cells)) for i, t in enumerate(titles)]
    fixed = sum(w for t, w in zip(titles, widths, strict=True) if t not in WRAPPING)
    left = console.width - fixed - GAP * (len(titles) - 1)  # for the columns that wrap
    for title, width in zip(titles, widths, strict=True):
        wraps = title in WRAPPING
        if title == "run_name" and "settings" in titles:  # whole names, while room is left
            wraps = left - width < MIN_SETTINGS
        out.add_column(
            title,
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
            min_width=None if wraps else width,
            justify="right" if title in numeric else "left",
        )
    for row in cells:
        failed = "FAILED" in row or "KILLED" in row
        out.add_row(*row, style="red" if failed else "dim" if "diverged" in row else None)
    console.print(out)
    if dropped:
        console.print(
            f"(not shown at {console.width} columns: {', '.join(dropped)}; --format csv: all)",
            style="dim",
            markup=False,
        )


def figure_path(out: str) -> Path:
    """Where --out writes (a folder gets comparison.png inside it); checked before any run is
    read, so a typo costs nothing."""
    from matplotlib.figure import Figure

    path = Path(out)
    if path.is_dir():
        path = path / "comparison.png"
    kinds = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in kinds:
        raise UsageError(f"--out {out}: unknown file type {path.suffix!r}; use .png, .pdf or .svg")
    if not path.parent.is_dir():
        raise UsageError(f"--out {out}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"--out {out}: folder {path.parent} is not writable")
    return path


def write_figure(uri: str, found: list, path: Path) -> None:
    """The overlay of the runs' loss curves, written whole or not at all."""
    suffix = path.suffix.lower().lstrip(".")
    figure = comparisons.comparison(uri, found)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=path.suffix, delete=False) as tmp:
        pass
    try:
        figure.savefig(tmp.name, format=suffix)
        os.replace(tmp.name, path)
    except OSError as error:
        Path(tmp.name).unlink(missing_ok=True)
        raise UsageError(f"--out {path}: cannot write: {error.strerror or error}") from error


def compare(args: argparse.Namespace) -> int:
    uri = existing_store(args.tracking_uri)
    out = figure_path(args.out) if args.out else None
    try:
        found, _ = readback.select(
            uri,
            args.runs,
            args.parent,
            args.experiment,
            args.filter,
            say=lambda how: print(f"gdfit-compare: {how}", file=sys.stderr),
        )
    except GdfitError:
        raise
    except Exception as error:  # a bad filter, an unreachable store
        raise GdfitError(f"cannot read runs from {uri}: {str(error).splitlines()[0]}") from error
    if not found:
        what = f"parent run {args.parent}" if args.parent else f"experiment {args.experiment!r}"
        print(
            f"gdfit-compare: no runs match ({what}"
            f"{', filter ' + args.filter if args.filter else ''}) in {redact(uri)}",
            file=sys.stderr,
        )
        return 1
    ranking = None
    if args.sort is None:
        columns, rows = readback.table(readback.ranked(found))
        if readback.ranking(found) != "final_loss":
            ranking = readback.RANKINGS[readback.ranking(found)]
    else:
        columns, rows = readback.table(found)
        rows = sort(columns, rows, args.sort)
    if args.format == "csv":
        sys.stdout.write(as_csv(columns, rows))
    elif args.format == "json":
        print(as_json(rows))
    elif args.format == "markdown":
        print(as_markdown(columns, rows))
    else:
        print_table(columns, rows, ranking)
    if out:
        order = {r["run_id"]: i for i, r in enumerate(rows)}
        write_figure(uri, sorted(found, key=lambda r: order[r.info.run_id]), out)
        print(f"wrote {out}", file=sys.stderr if args.format != "table" else sys.stdout)
    if args.figures:
        said = sys.stderr if args.format != "table" else sys.stdout
        for run in found:
            try:
                written = redraw.save(uri, run, Path(args.figures))
            except GdfitError as error:
                print(f"gdfit-compare: {run.info.run_name}: not drawn: {error}", file=sys.stderr)
                continue
            print(f"wrote {', '.join(str(p) for p in written)}", file=said)
    return 0


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        sys.exit(compare(parse_args(argv)))


if __name__ == "__main__":
    main()

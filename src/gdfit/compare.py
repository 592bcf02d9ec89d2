"""Read a set of runs back from MLflow as a table, and overlay their loss curves.

  gdfit-compare --parent RUN             the jobs of one sweep
  gdfit-compare RUN [RUN ...]            runs named directly (a sweep parent stands for its jobs)
  gdfit-compare --experiment gdfit --filter "params.`backend.name` = 'tensor'"
  gdfit-compare --parent RUN --format csv > runs.csv
  gdfit-compare RUN --figures figs/       each run's fit.png and loss.png, drawn from the store

RUN is a run id, a unique prefix of one (as git takes commits) or a run name (the newest run
of that name). Rows are sorted by final_loss, best first, unless --sort says otherwise.
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
from gdfit.errors import GdfitError, UsageError, reported_errors
from gdfit.redaction import redact
from gdfit.store import add_tracking_uri, resolve_uri

FORMATS = ("table", "csv", "markdown", "json")
# At a narrow terminal these go first, in this order (settings that are the same in every run
# move to a line above the table before anything else goes). Never dropped: run_id, status,
# final_loss, loss_gap.
DROP_ORDER = ("coefficients", "train_seconds", "run_name")


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
        default="final_loss",
        metavar="KEY",
        help="column to sort by, lowest first; --sort=-KEY for highest first (default: final_loss)",
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


def table_cells(columns: list[str], rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Titles and cells, the coefficients folded into one column."""
    coefs = [c for c in columns if c.startswith("coef_")]
    titles = [c for c in columns if c not in coefs and c not in ("train_seconds", "ended")]
    if coefs:
        titles.append("coefficients")
    titles.append("train_seconds")
    cells = []
    for r in rows:
        line = [text(c, r[c]) for c in titles if c in r]
        if coefs:
            shown = [f"{r[c]:.4g}" for c in coefs if r[c] is not None]
            line.insert(len(line) - 1, "[" + ", ".join(shown) + "]" if shown else "")
        cells.append(line)
    return titles, cells


def fit_to_width(titles, cells, width: int) -> tuple[list[str], list[list[str]], list[str], list]:
    """Drop columns until the table fits `width`: first the settings that are the same in every
    run (returned as `same`, to print above the table), then DROP_ORDER, then the other
    settings from the right. Returns (titles, cells, dropped column names, same)."""
    dropped, same = [], []

    def natural(i: int) -> int:
        return max(len(titles[i]), *(len(row[i]) for row in cells))

    def total(keep: list[int]) -> int:
        return sum(natural(i) for i in keep) + 3 * (len(keep) - 1)  # " | " between columns

    keep = list(range(len(titles)))
    settings = [
        i
        for i, t in enumerate(titles)
        if t not in ("run_id", "run_name", "status", "final_loss", "loss_gap", "coefficients")
        and t != "train_seconds"
    ]
    if len(cells) > 1:
        for i in settings:
            if total(keep) <= width:
                break
            if len({row[i] for row in cells}) == 1:
                keep.remove(i)
                same.append((titles[i], cells[0][i]))
    order = [titles.index(t) for t in DROP_ORDER if t in titles]
    order += [i for i in reversed(settings) if i in keep]
    for i in order:
        if total(keep) <= width:
            break
        keep.remove(i)
        dropped.append(titles[i])
    return [titles[i] for i in keep], [[row[i] for i in keep] for row in cells], dropped, same


def print_table(columns: list[str], rows: list[dict]) -> None:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=240)  # piped or captured: no reason to squeeze the table
    titles, cells = table_cells(columns, rows)
    titles, cells, dropped, same = fit_to_width(titles, cells, console.width)
    if same:
        console.print("same in every run: " + ", ".join(f"{k} {v}" for k, v in same), markup=False)
    out = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    numeric = {"final_loss", "loss_gap", "train_seconds", "lr", "seed"}
    for title in titles:
        width = max(len(title), *(len(row[titles.index(title)]) for row in cells))
        out.add_column(
            title,
            no_wrap=title != "run_name",
            min_width=width if title != "run_name" else None,
            justify="right" if title in numeric else "left",
        )
    for row in cells:
        out.add_row(*row, style="red" if "FAILED" in row or "KILLED" in row else None)
    console.print(out)
    if dropped:
        console.print(
            f"(not shown at {console.width} columns: {', '.join(dropped)}; "
            "--format csv has every column)",
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
    uri = resolve_uri(args.tracking_uri, "--tracking-uri")
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
    columns, rows = readback.table(found)
    rows = sort(columns, rows, args.sort)
    if args.format == "csv":
        sys.stdout.write(as_csv(columns, rows))
    elif args.format == "json":
        print(as_json(rows))
    elif args.format == "markdown":
        print(as_markdown(columns, rows))
    else:
        print_table(columns, rows)
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

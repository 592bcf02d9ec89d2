"""What a run prints while it fits, in one of three modes (`PROGRESS`):

- "lines": the example's `<step> <loss>` every `log_every` steps, with a rich progress bar below
  them when stdout is a terminal (what `gdfit-train` prints);
- "bar": a progress bar alone, the loss so far beside it (`gdfit.fit` in a notebook or script):
  tqdm's widget in Jupyter when ipywidgets is installed, else a text bar redrawn in place with
  a carriage return, which Jupyter shows as one line;
- "none": nothing (a sweep's job, which then prints its `job_line`).

Also the lines that close a run: `job_line` and `where`.
"""

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

PROGRESS = ("lines", "bar", "none")


class Reporter:
    """Shows each chunk of losses as `mode` says."""

    def __init__(self, steps: int, log_every: int, description: str, mode: str = "lines"):
        assert mode in PROGRESS, mode
        self.log_every = log_every if mode == "lines" else 0  # 0: no loss lines
        self.progress = self.bar = None
        if mode == "lines" and sys.stdout.isatty():
            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(),
                transient=True,
            )
            self.task = self.progress.add_task(description, total=steps)
        elif mode == "bar":
            from tqdm.auto import tqdm  # the widget in Jupyter, else the text bar

            self.bar = tqdm(total=steps, desc=description, file=sys.stdout, unit="step")

    def __enter__(self) -> "Reporter":
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.stop()
        if self.bar is not None:
            self.bar.close()

    def chunk(self, start: int, losses) -> None:
        if self.bar is not None:
            if len(losses):
                self.bar.set_postfix(loss=f"{float(losses[-1]):.6g}", refresh=False)
            self.bar.update(len(losses))
        if not self.log_every:
            return
        first = -start % self.log_every
        lines = [
            f"{start + i} {float(losses[i])}" for i in range(first, len(losses), self.log_every)
        ]
        if self.progress:  # the bar at this chunk's end (drawn now: printing shows the bar as
            # last drawn, and the loop may keep the refresh thread waiting), its lines above it
            self.progress.update(self.task, completed=start + len(losses), refresh=True)
            for line in lines:
                self.progress.console.print(line, highlight=False)
        elif lines:
            print("\n".join(lines), flush=True)


def job_line(result) -> str:
    """A sweep job's one line: run id, name, final loss and gap (the loss lines stay off). The
    id comes first, so that a long name can only wrap the line after it at 80 columns."""
    gap = (
        ""
        if result.optimal_loss is None
        else f"  gap {result.final_loss - result.optimal_loss:.3g}"
    )
    return f"{result.run_id[:8]}  {result.run_name}  final_loss {result.final_loss:.8g}{gap}"


def diverged_line(run_id: str, run_name: str, error) -> str:
    """The line of a sweep job whose loss diverged (`error`: gdfit.errors.Diverged): a result of
    the search, said once, here."""
    stable = f" (stable: lr < {error.stable_lr:.2g})" if error.stable_lr else ""
    return f"{run_id[:8]}  {run_name}  diverged at step {error.step:,}{stable}"


def where(run_id: str, status: str, store: str, store_option: str, view: str | None) -> str:
    """Where a finished run went and how to look at it, for the end of `gdfit-train`."""
    short = run_id[:8]
    lines = [f"gdfit: run {run_id} {status}, in {store}"]
    if view:
        local = store.startswith("sqlite:")
        lines.append(
            f"gdfit: view it: {'gdfit-ui' + store_option + ', then ' if local else ''}{view}"
        )
    lines.append(
        f"gdfit: compare it: gdfit-compare {short}{store_option}; "
        f"rerun it: gdfit-rerun {short}{store_option}"
    )
    return "\n".join(lines)

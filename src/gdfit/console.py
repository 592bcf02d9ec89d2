"""What a run prints: `<step> <loss>` every `log_every` steps, and a progress bar on a terminal."""

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn


class Reporter:
    """Prints the loss lines of each chunk; shows a rich progress bar only when stdout is a TTY."""

    def __init__(self, steps: int, log_every: int, description: str, lines: bool = True):
        self.log_every = log_every if lines else 0  # 0: no loss lines (a sweep's job)
        self.progress = None
        if sys.stdout.isatty() and lines:
            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(),
                transient=True,
            )
            self.task = self.progress.add_task(description, total=steps)

    def __enter__(self) -> "Reporter":
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.stop()

    def chunk(self, start: int, losses) -> None:
        if not self.log_every:
            return
        first = -start % self.log_every
        lines = [
            f"{start + i} {float(losses[i])}" for i in range(first, len(losses), self.log_every)
        ]
        if self.progress:
            for line in lines:
                self.progress.console.print(line, highlight=False)
            self.progress.advance(self.task, len(losses))
        elif lines:
            print("\n".join(lines), flush=True)


def job_line(result) -> str:
    """A sweep job's one line: name, final loss, gap and run id (the loss lines stay off)."""
    gap = (
        ""
        if result.optimal_loss is None
        else f"  gap {result.final_loss - result.optimal_loss:.3g}"
    )
    loss = f"final_loss {result.final_loss:.8g}{gap}"
    return f"{result.run_name}  {loss}  FINISHED  run {result.run_id[:8]}"


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

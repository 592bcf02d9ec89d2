"""What a run prints: `<step> <loss>` every `log_every` steps, and a progress bar on a terminal."""

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn


class Reporter:
    """Prints the loss lines of each chunk; shows a rich progress bar only when stdout is a TTY."""

    def __init__(self, steps: int, log_every: int, description: str):
        self.log_every = log_every
        self.progress = None
        if sys.stdout.isatty():
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

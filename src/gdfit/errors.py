"""The errors gdfit reports to users as one line, each with the exit code the CLI returns."""

from typing import Any


class GdfitError(Exception):
    """A failure the user can act on; the CLI prints `gdfit: error: <message>` and exits."""

    exit_code = 1


class ConfigError(GdfitError, ValueError):
    """A setting is invalid; raised before any run is created."""

    exit_code = 2

    def __init__(self, key: str, allowed: str, value: Any = None):
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{key}: {allowed}{shown}")
        self.key = key

    @classmethod
    def from_line(cls, line: str) -> "ConfigError":
        """A ConfigError whose message is `line` as it stands: a Hydra or OmegaConf error that
        gdfit.cli.describe has put in one line, which starts with the setting it is about."""
        error = cls.__new__(cls)
        GdfitError.__init__(error, line)
        error.key = line.partition(":")[0]
        return error


class UsageError(GdfitError):
    """A command was asked for something that is not there (an unknown run, experiment or
    output path); nothing is created."""

    exit_code = 2


class TrackingError(GdfitError):
    """The MLflow store cannot be reached, created or written."""


class Diverged(GdfitError):
    """The loss became non-finite or grew past the divergence bound."""

    def __init__(self, step: int, loss: float, lr: float, stable_lr: float | None = None):
        limit = "" if stable_lr is None else f" (it diverges above ~{stable_lr:.3g} here)"
        super().__init__(
            f"the loss diverged at step {step} (loss {loss:.6g}); "
            f"try a smaller learning rate than optimizer.lr={lr:g}{limit}"
        )
        self.step = step


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the run ends KILLED and the CLI exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

"""The errors gdfit reports to users as one line, and how a command ends with one.

Exit codes: 0 done, 1 the run failed (diverged, store unreachable), 2 a bad setting or an
unknown run, 130 / 143 stopped by SIGINT / SIGTERM. A user's mistake never ends in a traceback;
HYDRA_FULL_ERROR=1 brings them back for whoever debugs gdfit itself.
"""

import dataclasses
import difflib
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from gdfit.redaction import redact, redact_logs


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
        """A ConfigError whose message is `line` as it stands: a Hydra or OmegaConf error put
        in one line by `hydra_message`, which starts with the setting it is about."""
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
        self.step, self.loss, self.lr, self.stable_lr = step, loss, lr, stable_lr


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the run ends KILLED and the CLI exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ---- Hydra's and OmegaConf's errors in one line ----

_TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def hydra_message(error: Exception) -> str:
    """One line for a Hydra or OmegaConf error: the dotted key and what it accepts."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    if isinstance(error, OverrideParseException):  # a quote or a space in a value, unquoted
        name = error.override.partition("=")[0]
        return (
            f"{name}: cannot read the override {error.override!r}: quote a value that holds a "
            f"quote, space or bracket ({name}=\"it's\", or '...' around a \"), or put \\ before "
            "the character"
        )
    if isinstance(error, MissingConfigException) and error.options:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        return f"{group}={option}: unknown option; choose one of {', '.join(error.options)}"
    cause: Any = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    key = getattr(cause, "full_key", None)
    first = str(getattr(cause, "msg", None) or cause).splitlines()[0]
    if key and (m := re.match(r"Value '(.*)' of type '.*' could not be converted to (\w+)", first)):
        return f"{key}: must be {_TYPE_NAMES.get(m[2], m[2])} (got {m[1]!r})"
    schema = getattr(cause, "object_type", None)
    if key and isinstance(cause, ConfigKeyError | AttributeError) and _is_schema(schema):
        valid = [f.name for f in dataclasses.fields(schema)]  # type: ignore[arg-type]
        name = key.rpartition(".")[2]
        hint = nearest(key, schema)
        return f"{key}: no such setting; {hint or f'{name!r} is not one of ' + ', '.join(valid)}"
    if m := re.match(r"Ambiguous value for argument '(([^=]+)=.*)'", first):
        return (
            f"{m[1]}: several values without -m; to run each one, sweep: gdfit-train -m {m[1]} "
            f"(a list value is written {m[2]}=[a,b], a string with commas {m[2]}='a,b')"
        )
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{key + ': ' if key else ''}{first if key else ' '.join(lines[:2])}"


def _is_schema(schema: object) -> bool:
    return isinstance(schema, type) and dataclasses.is_dataclass(schema)


def _dotted_keys(schema: Any, prefix: str = "") -> list[str]:
    """Every leaf key below a dataclass schema, dotted (`optimizer.lr`, `train.steps`, ...)."""
    keys = []
    for f in dataclasses.fields(schema):
        inner = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(inner):
            keys += _dotted_keys(type(inner), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def nearest(key: str, schema: object) -> str | None:
    """'did you mean optimizer.lr?' for `lr`: keys that end in the same name, else close ones."""
    if not _is_schema(schema):
        return None
    assert isinstance(schema, type)
    prefix = key.rpartition(".")[0]
    keys = [f"{prefix}.{k}" if prefix else k for k in _dotted_keys(schema)]
    name = key.rpartition(".")[2]
    same = [k for k in keys if k.rpartition(".")[2] == name and k != key]
    found = same or difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
    return f"did you mean {' or '.join(found)}?" if found else None


# ---- how a command ends ----

STOPPING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_full_trace = False  # the user set HYDRA_FULL_ERROR=1: let errors through with their traceback
_stopping = False  # a stopping signal has arrived: the command is closing its run and ending


def _raise_stopped(signum: int, frame: object) -> None:
    """The first Ctrl-C or stopping signal stops the command (Stopped, a KeyboardInterrupt);
    those after it are ignored, so that Ctrl-C pressed three times in a row cannot cut short
    the closing of the run, or kill the process by the default handler Python restores while
    it exits (an exit by signal, not 130)."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Run a command so that its known failures end as one line and an exit code.

    Hydra is told to let errors through (HYDRA_FULL_ERROR) so they can be described here;
    a user who sets HYDRA_FULL_ERROR=1 still gets the full stack trace.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    global _full_trace, _stopping
    before = os.environ.get("HYDRA_FULL_ERROR")
    full_trace = _full_trace = before == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # A closed terminal (SIGHUP), SIGTERM and SIGQUIT end a run as Ctrl-C does: KILLED, with
    # what it has logged, instead of leaving it RUNNING.
    _stopping = False
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, *STOPPING)}
    redact_logs()  # Hydra logs each sweep job's overrides, a tracking.uri's password too
    try:
        yield
    except GdfitError as error:
        if full_trace:
            raise
        fail(error)
    except (HydraException, OmegaConfBaseException) as error:
        if full_trace:
            raise
        _exit(hydra_message(error), 2)
    except KeyboardInterrupt as error:
        signum = error.signum if isinstance(error, Stopped) else signal.SIGINT
        notes = getattr(error, "__notes__", [])
        _exit("; ".join([f"stopped by {signal.Signals(signum).name}", *notes]), 128 + signum)
    finally:
        for s, handler in previous.items():  # a stopped command ends: later signals ignored
            signal.signal(s, signal.SIG_IGN if _stopping else handler)
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def fail(error: GdfitError) -> NoReturn:
    """Print the error (with the notes that say what became of the run) and exit; re-raise it
    when the user asked for full traces."""
    if _full_trace:
        raise error
    _exit("; ".join([str(error), *getattr(error, "__notes__", [])]), error.exit_code)


def _exit(message: str, code: int) -> NoReturn:
    print(f"gdfit: error: {redact(message)}", file=sys.stderr, flush=True)
    sys.exit(code)

"""How gdfit's commands end: one line on stderr and a documented exit code, never a traceback
for a user's mistake. Exit codes: 0 done, 1 the run failed (diverged, store unreachable),
2 a bad setting, 130 / 143 stopped by SIGINT / SIGTERM.
"""

import argparse
import dataclasses
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from gdfit.errors import ConfigError, GdfitError, Stopped, UsageError
from gdfit.redaction import redact, redact_logs

_full_trace = False  # the user set HYDRA_FULL_ERROR=1: let errors through with their traceback
_TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def describe(error: Exception) -> str:
    """One line for a Hydra or OmegaConf error: the dotted key and what it accepts."""
    if isinstance(error, MissingConfigException) and error.options:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        return f"{group}={option}: unknown option; choose one of {', '.join(error.options)}"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    key = getattr(cause, "full_key", None)
    first = str(getattr(cause, "msg", None) or cause).splitlines()[0]
    if key and (m := re.match(r"Value '(.*)' of type '.*' could not be converted to (\w+)", first)):
        return f"{key}: must be {_TYPE_NAMES.get(m[2], m[2])} (got {m[1]!r})"
    schema = dataclasses.is_dataclass(getattr(cause, "object_type", None))  # not a free dict
    if key and isinstance(cause, ConfigKeyError | AttributeError) and schema:
        valid = [f.name for f in dataclasses.fields(cause.object_type)]
        name = key.rpartition(".")[2]
        hint = _nearest(key, cause.object_type)
        return f"{key}: no such setting; {hint or f'{name!r} is not one of ' + ', '.join(valid)}"
    if m := re.match(r"Ambiguous value for argument '(([^=]+)=.*)'", first):
        return (
            f"{m[1]}: several values without -m; to run each one, sweep: gdfit-train -m {m[1]} "
            f"(a list value is written {m[2]}=[a,b], a string with commas {m[2]}='a,b')"
        )
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{key + ': ' if key else ''}{first if key else ' '.join(lines[:2])}"


def _dotted_keys(schema, prefix: str = "") -> list[str]:
    """Every leaf key below a dataclass schema, dotted (`optimizer.lr`, `train.steps`, ...)."""
    keys = []
    for f in dataclasses.fields(schema):
        inner = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(inner):
            keys += _dotted_keys(type(inner), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _nearest(key: str, schema) -> str | None:
    """'did you mean optimizer.lr?' for `lr`: keys that end in the same name, else close ones."""
    import difflib

    if not dataclasses.is_dataclass(schema):
        return None
    prefix = key.rpartition(".")[0]
    keys = [f"{prefix}.{k}" if prefix else k for k in _dotted_keys(schema)]
    name = key.rpartition(".")[2]
    same = [k for k in keys if k.rpartition(".")[2] == name and k != key]
    found = same or difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
    return f"did you mean {' or '.join(found)}?" if found else None


def refuse_group_lists(overrides: list[str], groups: dict) -> None:
    """`backend=[numpy,tensor]` would merge both options into one run and `optimizer=null`
    would leave the group empty; a group takes a single option, so say which there are and
    how to run each. `groups`: group name -> its folder of options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except Exception:  # not an override, or malformed: Hydra reports it in its own words
            continue
        if o.key_or_group in groups and o.value() is None and not o.is_delete():
            options = sorted(p.stem for p in groups[o.key_or_group].glob("*.yaml"))
            raise ConfigError(
                o.key_or_group, f"needs an option: one of {', '.join(options)}", o.input_line
            )
        if o.key_or_group in groups and isinstance(o.value(), list):
            names = ",".join(str(v) for v in o.value())
            raise ConfigError(
                o.key_or_group,
                f"takes one option, not a list; to run each, sweep: -m {o.key_or_group}={names}",
                o.input_line,
            )


def refuse_mode_clash(args: list[str]) -> None:
    """Hydra accepts one of -m, --cfg, --info, ... and says so with a traceback."""
    modes = {"-m": "-m", "--multirun": "-m", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info"}
    modes |= {"--info": "--info", "--run": "--run", "-r": "--run"}
    given = sorted({modes[a] for a in args if a in modes})
    if len(given) > 1:
        raise UsageError(
            f"{' and '.join(given)} cannot go together; a sweep's composed config is shown by "
            "--cfg job without -m, and each job's is logged with its run as config.yaml"
        )


def version_line() -> str:
    """gdfit's version and those of the libraries that decide its numbers and its store."""
    from importlib.metadata import version

    from gdfit import __version__

    libs = [f"{name} {version(name)}" for name in ("hydra-core", "mlflow", "numpy")]
    return f"gdfit {__version__} ({', '.join(libs)})"


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """`--tracking-uri`, defaulting as `gdfit-train` does (see tracking.resolve_uri)."""
    parser.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else the project's mlruns/ store",
    )


STOPPING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


_stopping = False  # a stopping signal has arrived: the command is closing its run and ending


def _raise_stopped(signum, frame) -> None:
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
def signals_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and the stopping signals while a run is being closed (its last points
    sent, its status set): a second Ctrl-C must not cut that short and leave it RUNNING. They
    arrive, and act, when the block ends."""
    held = {signal.SIGINT, *STOPPING}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Run a command so that its known failures end as one line and an exit code.

    Hydra is told to let errors through (HYDRA_FULL_ERROR) so they can be described here;
    a user who sets HYDRA_FULL_ERROR=1 still gets the full stack trace.
    """
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
        _exit(describe(error), 2)
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

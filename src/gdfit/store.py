"""The MLflow store a command uses: its address, checked; opening it (creating a new sqlite
store whole, once, under a lock) and its experiment; and the housekeeping of runs whose process
is gone. Every client comes from `client.connect`: bounded waits, redacted writes."""

import argparse
import getpass
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from filelock import FileLock
from mlflow.entities import RunTag
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

from gdfit import liveness, views
from gdfit.client import Client, connect, reading, store_error
from gdfit.config import check_experiment_name
from gdfit.errors import ConfigError, GdfitError, TrackingError
from gdfit.paths import default_store_dir
from gdfit.redaction import has_userinfo, public_uri, redact

STORE_FORMS = "sqlite:///PATH/mlflow.db, http(s)://HOST:PORT or postgresql://..."


def resolve_uri(uri: str | None, source: str = "tracking.uri") -> str:
    """`uri` if set, else $MLFLOW_TRACKING_URI, else sqlite in the project's mlruns/; checked,
    with a relative sqlite path made absolute. `source` names the setting in errors."""
    if not uri:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI"
    if not uri:
        return f"sqlite:///{default_store_dir() / 'mlflow.db'}"
    return checked_uri(uri, source)


def default_uri() -> str:
    """Where the commands look when not told (see resolve_uri)."""
    return resolve_uri(None)


def store_option(uri: str, lasting: bool = False) -> str:
    """` --tracking-uri URI` when `uri` is not where the commands look by default. `lasting`:
    for text kept with a run (its description), read later in another shell, where
    $MLFLOW_TRACKING_URI may not be set: only the project's own store goes without saying."""
    default = f"sqlite:///{default_store_dir() / 'mlflow.db'}" if lasting else default_uri()
    return "" if uri == default else f" --tracking-uri {public_uri(uri)}"


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """A command's `--tracking-uri`, defaulting as `gdfit-train` does (see resolve_uri)."""
    parser.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else the project's mlruns/ store",
    )


def checked_uri(uri: str, source: str) -> str:
    """A store gdfit can write whole runs to, or a ConfigError saying what is wrong."""
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    kind = scheme.split("+")[0]

    def refuse(why: str) -> NoReturn:
        raise ConfigError(source, f"{why}; use {STORE_FORMS}", public_uri(uri))

    if kind == "sqlite":
        rest = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
        if rest is None or rest in ("", ":memory:"):
            refuse("an in-memory sqlite store vanishes when the command ends")
        path = Path(rest)
        if not path.is_absolute():  # the relative form MLflow itself prints
            path = Path.cwd() / path
        if path.is_dir():
            refuse(f"{path} is a folder, not a database file")
        return f"sqlite:///{path}"
    if kind in ("http", "https", "postgresql", "postgres", "mysql", "mssql"):
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if has_userinfo(uri) and (parts is None or "@" not in parts.netloc):
            raise ConfigError(  # a parser would send part of it as the host, port or path
                source,
                "its user name or password holds a character that must be percent-encoded "
                "there (/ as %2F, # as %23, ? as %3F, a space as %20)",
                public_uri(uri),
            )
        if kind in ("http", "https") and not host:
            refuse("the address names no host")
        return uri
    if kind == "file" or not scheme or len(scheme) == 1:  # a path (or a Windows drive)
        refuse("a folder or file:// store is MLflow's old file store, which 3.13+ refuses")
    refuse(f"{scheme}: is not a tracking store gdfit can use")


def missing_store(uri: str) -> Path | None:
    """The database file of sqlite store `uri` when it is not there yet (opening it would
    create it empty); None for a store that exists or is not sqlite."""
    db = sqlite_path(uri)
    return None if db is None or (db.is_file() and db.stat().st_size > 0) else db


def first_run_hint(db: Path) -> str:
    """For the project's own store, not there yet: how it comes to be."""
    return "run gdfit-train first" if db == default_store_dir() / "mlflow.db" else ""


def existing_store(arg: str | None) -> str:
    """The store a command that reads runs is pointed at (`--tracking-uri` `arg`, else as
    resolve_uri finds it), refused when it is a sqlite store that is not there: opening it
    would leave an empty store behind and then say only that the run is not in it."""
    uri = resolve_uri(arg, "--tracking-uri")
    db = missing_store(uri)
    if db is None:
        return uri
    source = (
        "MLFLOW_TRACKING_URI"
        if not arg and os.environ.get("MLFLOW_TRACKING_URI")
        else "--tracking-uri"
    )
    hint = first_run_hint(db)
    raise ConfigError(
        source, f"no MLflow store at {db}: check the path{', or ' if hint else ''}{hint}"
    )


def sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def open_experiment(uri: str, name: str) -> tuple[Client, str]:
    """A client on `uri` and the id of experiment `name`, creating store and experiment once.

    A new sqlite store is created by migrations that race when several processes start at
    once, so creation happens under a file lock beside the database; artifacts of a sqlite
    store live next to it, under `artifacts/<experiment>`. Any failure is a TrackingError
    naming the URI.
    """
    check_experiment_name(name)
    try:
        db = sqlite_path(uri)
        if db is None:
            client = connect(uri)
            return client, _get_or_create(client, name, artifact_location=None)
        return _open_sqlite(db, uri, name)
    except GdfitError:
        raise
    except Exception as error:
        raise store_error(uri, error) from error


def _open_sqlite(db: Path, uri: str, name: str) -> tuple[Client, str]:
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        if not db.exists() or db.stat().st_size == 0:
            _create_sqlite_store(db)
        try:
            client = connect(uri)
            location = (db.parent / "artifacts" / artifact_folder(redact(name))).as_uri()
            return client, _get_or_create(client, name, artifact_location=location)
        except Exception as error:
            text = str(error).lower()
            schema = ("duplicate column", "already exists", "no such table", "no such column")
            if any(s in text for s in schema):
                raise TrackingError(
                    f"the store {db} is half-built (its creation was cut off, or another tool "
                    f"wrote it): move it aside (mv {db} {db}.broken) and gdfit creates a new one"
                ) from error
            raise


def _create_sqlite_store(db: Path) -> None:
    """Build MLflow's tables in a file beside `db` and move it into place, so that a store
    appears whole or not at all however its creation is cut off (Ctrl-C, SIGKILL, a full
    disk). The caller holds the store's lock."""
    for leftover in db.parent.glob(f".{db.name}.creating-*"):
        leftover.unlink(missing_ok=True)
    building = db.with_name(f".{db.name}.creating-{os.getpid()}")
    connect(f"sqlite:///{building}").search_experiments(max_results=1)  # runs migrations
    os.replace(building, db)


def artifact_folder(experiment: str) -> str:
    """The folder under the store's artifacts/ for `experiment`: its name when that is a plain
    file name, else a safe slug plus a hash, so that no name (`../x`, `/tmp/x`) leads outside."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}", experiment) and ".." not in experiment:
        return experiment
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._")[:60] or "experiment"
    return f"{slug}-{hashlib.sha256(experiment.encode()).hexdigest()[:10]}"


def _get_or_create(client: Client, name: str, artifact_location: str | None) -> str:
    """The experiment's id; it carries gdfit's view of its runs in the MLflow UI."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        views.ensure(client, experiment)
        return experiment.experiment_id
    tags = views.wanted_tags({})
    return client.create_experiment(name, artifact_location=artifact_location, tags=tags)


def experiment_names(uri: str) -> list[str]:
    with reading(uri, "read runs from"):
        return sorted(e.name for e in connect(uri).search_experiments())


def source_tags() -> dict[str, str]:
    """MLflow's own source tags, as its fluent API would set them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {MLFLOW_SOURCE_NAME: sys.argv[0], MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: user}


_reaped: set[tuple[str, str]] = set()  # (store, experiment) reap_lost has looked at


def reap_lost(client: Client, experiment_id: str, once: bool = False) -> list:
    """End KILLED the RUNNING runs of this machine whose process is gone (SIGKILL, a crash,
    a power cut), saying so; a run whose process still runs, or that ran elsewhere, is left.
    With `once`, only the first call for a store and experiment looks (a sweep's jobs share
    a process). Never fails the caller: this is housekeeping."""
    if once and (client.uri, experiment_id) in _reaped:
        return []
    _reaped.add((client.uri, experiment_id))
    try:
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    except Exception:
        return []
    reaped = []
    for run in running:
        recorded = run.data.tags.get(liveness.PROCESS_TAG)
        if not recorded or not liveness.is_gone(recorded):
            continue
        try:
            client.log_batch(
                run.info.run_id,
                tags=[RunTag("gdfit.reaped", "its process was gone")],
                synchronous=True,
            )
            client.set_terminated(run.info.run_id, "KILLED")
        except Exception:
            continue
        print(
            f"gdfit: run {run.info.run_id} ({run.info.run_name}) was RUNNING but its process "
            f"({recorded.rsplit(':', 3)[0]} pid {recorded.rsplit(':', 2)[1]}) is gone: "
            "marked KILLED, with the points it had logged",
            file=sys.stderr,
        )
        reaped.append(run)
    return reaped

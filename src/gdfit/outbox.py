"""What a run could not send to its store, kept on local disk until `gdfit-send` sends it.

A run's end sends its files (loss.npz with every step, the figures, config.yaml), its last
loss points, final metrics and tags, then its status. When the store cannot take them (a server
away for longer than gdfit waits, a full disk, an artifact folder that cannot be written),
`keep` writes what is left into a folder of its own:

    <place>/unsent/<run id>/unsent.json   store, run, status, end time, why, metrics, tags
    <place>/unsent/<run id>/files/...     the files still to upload (loss.npz among them)

built under a temporary name and renamed, so that a folder is there whole or not at all.
<place> is the sqlite store's own folder (beside mlflow.db); for a server's store, or when that
folder cannot be written (the disk that is full), gdfit's state folder ($XDG_STATE_HOME/gdfit,
else ~/.local/state/gdfit); else the temporary folder.

`gdfit-send` (gdfit.send) sends each kept folder once the store is back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from gdfit.errors import TrackingError, UsageError
from gdfit.redaction import redact
from gdfit.store import resolve_uri, sqlite_path

FILE = "unsent.json"


def places(uri: str) -> list[Path]:
    """Where a run of store `uri` keeps what it could not send, first choice first. The last
    resort, in the shared temporary folder, is this user's own (see `usable`)."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    found = [
        Path(state) / "gdfit" / "unsent",
        Path(tempfile.gettempdir()) / f"gdfit-unsent-{os.getuid()}",
    ]
    db = sqlite_path(uri)
    return ([db.parent / "unsent"] if db else []) + found


def usable(place: Path) -> bool:
    """Whether `place` (made if missing, private to this user) holds only this user's folders:
    a folder someone else made, or a link, in a shared temporary folder is never trusted."""
    place.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = place.lstat()
    return not place.is_symlink() and info.st_uid == os.getuid()


def keep(
    uri: str,
    run_id: str,
    run_name: str,
    status: str,
    why: str,
    metrics: list,
    tags: dict[str, str],
    files: Path | None,
    marks: list[str] | tuple[str, ...] = (),
    curve: Any = None,
) -> Path:
    """Write what is still to send of run `run_id` into its own folder; return the folder.
    `metrics`: mlflow Metric objects; `files`: a folder whose files are still to upload;
    `marks`: tags the failed end sets on the run, removed once it is sent; `curve`: the run's
    curve.CurveLogger, written here as loss.npz when `files` lacks it (it could not be staged).
    TrackingError when no place can hold it."""
    record = {
        "store": redact(uri),  # a password masked as ***: gdfit-send then asks for the address
        "run_id": run_id,
        "run_name": run_name,
        "status": status,
        "end_time": int(time.time() * 1000),
        "why": why,
        "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
        "tags": tags,
        "marks": list(marks),
    }
    failures = []
    for place in places(uri):
        building = place / f".{run_id}.partial-{os.getpid()}"
        try:
            if not usable(place):
                failures.append(f"{place}: not this user's own folder")
                continue
            shutil.rmtree(building, ignore_errors=True)
            if files is not None and any(files.iterdir()):
                shutil.copytree(files, building / "files")
            if curve is not None and not (building / "files" / "loss.npz").exists():
                (building / "files").mkdir(parents=True, exist_ok=True)
                curve.write(building / "files")
            building.mkdir(exist_ok=True)
            (building / FILE).write_text(json.dumps(record), encoding="utf-8")
            final = place / run_id
            shutil.rmtree(final, ignore_errors=True)  # an older attempt of the same run
            os.replace(building, final)
            return final
        except OSError as error:
            shutil.rmtree(building, ignore_errors=True)
            failures.append(f"{place}: {error.strerror or error}")
    raise TrackingError(
        f"run {run_id}'s unsent data could not be kept on disk either: " + "; ".join(failures)
    )


def read(folder: Path) -> dict:
    return json.loads((folder / FILE).read_text(encoding="utf-8"))


STATUSES = ("FINISHED", "FAILED", "KILLED")  # how a run can end
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_KEY = re.compile(r"[/\w.\- :]{1,250}")  # what MLflow takes as a metric or tag key


def checked(folder: Path) -> dict:
    """The record of kept folder `folder`, every part of it checked before anything is sent:
    UsageError naming the first thing that is not as `keep` writes it (a folder changed by
    hand, or not gdfit's)."""

    def wrong(what: str) -> NoReturn:
        raise UsageError(f"{folder} is not a folder gdfit kept unsent data in: {what}")

    try:
        record = read(folder)
    except OSError as error:
        wrong(f"{FILE}: {error.strerror}")
    except ValueError as error:
        wrong(f"{FILE} is not JSON ({error})")
    if not isinstance(record, dict):
        wrong(f"{FILE} holds no object")
    text = {"store": record.get("store"), "run_name": record.get("run_name")}
    text["why"] = record.get("why")
    for key, value in text.items():
        if not isinstance(value, str) or (key == "store" and not value):
            wrong(f"{key} must be text (got {value!r})")
    if not isinstance(record.get("run_id"), str) or not _RUN_ID.fullmatch(record["run_id"]):
        wrong(f"run_id must be an MLflow run id, 32 hex digits (got {record.get('run_id')!r})")
    if record.get("status") not in STATUSES:
        wrong(f"status must be one of {', '.join(STATUSES)} (got {record.get('status')!r})")
    if not _is_int(record.get("end_time")) or record["end_time"] <= 0:
        wrong(f"end_time must be milliseconds since 1970 (got {record.get('end_time')!r})")
    metrics = record.get("metrics")
    if not isinstance(metrics, list):
        wrong(f"metrics must be a list (got {_shown(metrics)})")
    for metric in metrics:
        if not (isinstance(metric, list) and len(metric) == 4 and _is_key(metric[0])):
            wrong(f"a metric must be [key, value, timestamp, step] (got {_shown(metric)})")
        if not (_is_number(metric[1]) and _is_int(metric[2]) and _is_int(metric[3])):
            wrong(f"a metric must be [key, value, timestamp, step] (got {_shown(metric)})")
    tags = record.get("tags")
    if not isinstance(tags, dict):
        wrong(f"tags must be an object of texts (got {_shown(tags)})")
    for key, value in tags.items():
        if not _is_key(key) or not isinstance(value, str):
            wrong(f"tag {key!r} must be a key with a text value (got {_shown(value)})")
    marks = record.get("marks", [])
    if not isinstance(marks, list) or not all(_is_key(m) for m in marks):
        wrong(f"marks must be a list of tag keys (got {_shown(marks)})")
    files = folder / "files"
    if files.is_symlink() or (files.exists() and not files.is_dir()):
        wrong("files must be a folder")
    for path in files.rglob("*") if files.is_dir() else ():
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            wrong(f"{path.relative_to(folder)} is not a plain file")
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_key(value: Any) -> bool:
    return isinstance(value, str) and _KEY.fullmatch(value) is not None


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def summary_of(folder: Path, record: dict) -> str:
    """What a kept folder holds, in a few words."""
    points = sum(1 for m in record["metrics"] if m[0] == "loss")
    files = folder / "files"
    count = sum(1 for p in files.rglob("*") if p.is_file()) if files.is_dir() else 0
    parts = [
        f"{count} files" + (" (loss.npz: every step)" if (files / "loss.npz").exists() else "")
    ]
    if points:
        parts.append(f"{points} chart points")
    if len(record["metrics"]) > points:
        parts.append(f"{len(record['metrics']) - points} final metrics")
    parts.append(f"status {record['status']}")
    return ", ".join(parts)


def found(uri: str | None) -> list[Path]:
    """The kept folders in the places runs of store `uri` use, and only that store's; with
    `uri` None, those of every store, in the places of the default store. Folders still being
    built (`.<run id>.partial-<pid>`) are not listed."""
    folders = []
    for place in places(uri or resolve_uri(None)):
        if place.is_dir() and usable(place):
            folders += sorted(p.parent for p in place.glob(f"[!.]*/{FILE}"))
    if uri is None:
        return folders
    return [f for f in folders if _recorded_store(f) in (redact(uri), None)]


def _recorded_store(folder: Path) -> str | None:
    try:
        return read(folder)["store"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not readable: listed, and send() says what is wrong with it

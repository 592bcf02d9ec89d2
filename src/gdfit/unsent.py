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

`gdfit-send` sends each kept folder once the store is back, ends the run with the status it
really had, and removes the folder. Sending twice is harmless: files are overwritten and the
store keeps one copy of an identical metric point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gdfit.errors import GdfitError, TrackingError, UsageError

FILE = "unsent.json"


def places(uri: str) -> list[Path]:
    """Where a run of store `uri` keeps what it could not send, first choice first. The last
    resort, in the shared temporary folder, is this user's own (see `usable`)."""
    from gdfit.tracking import sqlite_path

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
    marks: list[str] = (),
    curve=None,
) -> Path:
    """Write what is still to send of run `run_id` into its own folder; return the folder.
    `metrics`: mlflow Metric objects; `files`: a folder whose files are still to upload;
    `marks`: tags the failed end sets on the run, removed once it is sent; `curve`: the run's
    CurveLogger, written here as loss.npz when `files` lacks it (it could not be staged).
    TrackingError when no place can hold it."""
    from gdfit.redaction import redact

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


def describe(folder: Path, record: dict) -> str:
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


def send(folder: Path, uri: str | None = None) -> str:
    """Send what `folder` keeps to its store (or `uri`), end the run, remove the folder; a line
    saying what was sent. GdfitError when the store cannot take it yet (the folder stays)."""
    from mlflow.entities import Metric, RunTag

    from gdfit.client import connect, reading
    from gdfit.notes import shown_uri
    from gdfit.redaction import MASK
    from gdfit.tracking import checked_uri, sqlite_path

    try:
        record = read(folder)
        run_id = record["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = error.strerror if isinstance(error, OSError) else error
        raise UsageError(f"{folder} is not a folder gdfit kept unsent data in ({why})") from error
    if uri is None:
        if MASK in record["store"]:
            raise UsageError(
                f"{folder}: its store's address held a password, which gdfit does not write "
                "down: give the address with --tracking-uri"
            )
        uri = checked_uri(record["store"], f"the store recorded in {folder / FILE}")
    else:
        uri = checked_uri(uri, "--tracking-uri")
    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # connecting would create an empty store
        raise UsageError(
            f"{folder}: its store {db} is not there (moved?): give its address with --tracking-uri"
        )
    what = describe(folder, record)
    client = connect(uri)
    with reading(uri, "send to"):
        try:
            client.get_run(run_id)
        except Exception as error:
            if "not found" in str(error).lower() or "RESOURCE_DOES_NOT_EXIST" in str(error):
                raise UsageError(
                    f"run {run_id} is not in {shown_uri(uri)}: give the store it was logged "
                    "to with --tracking-uri"
                ) from error
            raise
    files = folder / "files"
    if files.is_dir() and any(files.iterdir()):
        client.log_artifacts(run_id, str(files))
    metrics = [Metric(*m) for m in record["metrics"]]
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a batch
        client.log_batch(run_id, metrics=metrics[i : i + 1000], synchronous=True)
    tags = [RunTag(k, v) for k, v in record["tags"].items()]
    for i in range(0, len(tags), 100):  # and at most 100 tags
        client.log_batch(run_id, tags=tags[i : i + 100], synchronous=True)
    with reading(uri, "send to"):
        present = client.get_run(run_id).data.tags
    # The marks of the failed end, and the reaper's if a command ended the run KILLED meanwhile.
    for mark in (*record.get("marks", ()), "gdfit.reaped"):
        if mark in present and mark not in record["tags"]:
            client.delete_tag(run_id, mark)
    client.set_terminated(run_id, record["status"], record["end_time"])
    shutil.rmtree(folder)
    return f"sent run {run_id} ({record['run_name']}): {what}"


def found(uri: str | None) -> list[Path]:
    """The kept folders in the places runs of store `uri` use, and only that store's; with
    `uri` None, those of every store, in the places of the default store. Folders still being
    built (`.<run id>.partial-<pid>`) are not listed."""
    from gdfit.redaction import redact
    from gdfit.tracking import resolve_uri

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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `gdfit-send [FOLDER ...] [--tracking-uri URI]`."""
    from gdfit.cli import reported_errors
    from gdfit.redaction import redact

    parser = argparse.ArgumentParser(
        prog="gdfit-send",
        description=(
            "Send to its MLflow store what a run could not send when it ended (the store was "
            "away, full or read-only): its files with loss.npz, last loss points, final "
            "metrics, tags and status, kept on disk in an unsent/<run id>/ folder. Without "
            "FOLDER, sends every such folder found beside the store and in gdfit's state and "
            "temporary folders (this user's only), each to the store it names."
        ),
    )
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="an unsent/<run id> folder")
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="without FOLDER: send the folders kept for this store; with FOLDER: send them "
        "here instead of to the store each names (needed when its address held a password, "
        "which gdfit does not write down)",
    )
    args = parser.parse_args(argv)
    with reported_errors():
        from gdfit.tracking import resolve_uri

        if args.folders:
            folders = [Path(f) for f in args.folders]
        else:  # --tracking-uri alone: that store's folders, sent there
            uri = args.tracking_uri and resolve_uri(args.tracking_uri, "--tracking-uri")
            folders = found(uri)
            if not folders:
                print("gdfit-send: nothing to send")
                return
        code = 0
        for folder in folders:
            try:
                print(f"gdfit-send: {send(folder, args.tracking_uri)}", flush=True)
            except GdfitError as error:
                code = max(code, error.exit_code)
                kept = "" if isinstance(error, UsageError) else f"; {folder} is kept for a retry"
                print(redact(f"gdfit-send: error: {error}{kept}"), file=sys.stderr, flush=True)
        if code:
            sys.exit(code)


if __name__ == "__main__":
    main()

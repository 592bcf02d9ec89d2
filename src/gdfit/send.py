"""`gdfit-send`: send to its MLflow store what a run kept on disk because the store could not
take it when the run ended (see gdfit.outbox), end the run with the status it really had, and
remove the folder. Sending twice is harmless: files are overwritten and the store keeps one copy
of an identical metric point."""

import argparse
import shutil
import sys
from pathlib import Path

from filelock import FileLock, Timeout
from mlflow.entities import Metric, RunTag

from gdfit.client import connect, reading
from gdfit.errors import GdfitError, TrackingError, UsageError, reported_errors
from gdfit.outbox import FILE, checked, found, summary_of
from gdfit.redaction import MASK, public_uri, redact
from gdfit.store import checked_uri, resolve_uri, sqlite_path


def send(folder: Path, uri: str | None = None) -> str:
    """Send what `folder` keeps to its store (or `uri`), end the run, remove the folder; a line
    saying what was sent. The folder is checked whole before anything is sent (UsageError),
    and sent by one gdfit-send at a time. GdfitError when the store cannot take it yet (the
    folder stays)."""
    lock = FileLock(str(folder.parent / f".{folder.name}.sending"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise GdfitError(f"{folder} is being sent by another gdfit-send: left to it") from None
    except OSError as error:  # no such folder, or one this user cannot write
        checked(folder)  # says what is wrong with it, if anything
        raise UsageError(f"{folder} cannot be sent from here ({error.strerror})") from error
    try:
        return _send(folder, uri)
    finally:
        lock.release()
        if not folder.exists():  # sent: no later send needs the lock
            Path(lock.lock_file).unlink(missing_ok=True)


def _send(folder: Path, uri: str | None) -> str:
    record = checked(folder)
    run_id = record["run_id"]
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
    what = summary_of(folder, record)
    client = connect(uri)
    with reading(uri, "send to"):
        try:
            client.get_run(run_id)
        except Exception as error:
            if "not found" in str(error).lower() or "RESOURCE_DOES_NOT_EXIST" in str(error):
                raise UsageError(
                    f"run {run_id} is not in {public_uri(uri)}: give the store it was logged "
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
    try:
        shutil.rmtree(folder)
    except OSError as error:
        return (
            f"sent run {run_id} ({record['run_name']}): {what}; {folder} could not be removed "
            f"({error.strerror}): remove it by hand"
        )
    return f"sent run {run_id} ({record['run_name']}): {what}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `gdfit-send [FOLDER ...] [--tracking-uri URI]`."""
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
                # only a store that could not take it is worth trying again
                kept = f"; {folder} is kept for a retry" if isinstance(error, TrackingError) else ""
                print(redact(f"gdfit-send: error: {error}{kept}"), file=sys.stderr, flush=True)
        if code:
            sys.exit(code)


if __name__ == "__main__":
    main()

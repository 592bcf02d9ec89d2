"""How gdfit talks to an MLflow store: bounded waits, true error messages, nothing secret sent.

Every MLflow client gdfit makes comes from `connect(uri)`, which
- bounds MLflow's own HTTP retries (minutes by default) to ~3 s for a refused connection and
  ~30 s for a server that accepts but never answers, unless the user set MLflow's variables;
- returns a `Client` that redacts every param, tag and text it records (see redaction.py) and
  rides out a server that goes away while a run writes to it, for up to RETRY_SECONDS.

`store_error` turns any failure into one TrackingError that says what happened: authentication
failed, permission denied, connection refused, no answer, or the store's own first line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from gdfit.errors import ConfigError, GdfitError, TrackingError
from gdfit.redaction import redact, redact_data

HTTP_DEFAULTS = {  # MlflowClient reads them per request
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
RETRY_SECONDS = 60.0  # how long a run waits for its server to come back (GDFIT_SERVER_WAIT)
RETRY_PAUSE = 2.0  # between two tries while it is away
_OUTAGE = re.compile(r"API request to \S+ failed with (timeout )?exception")


def connect(uri: str) -> Client:
    """A client on `uri`, a store address store.checked_uri has accepted."""
    _quiet_store_logs()
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # no retry chatter
        if redact(uri) != uri:  # MLflow prints "View run ... at <uri>" with the password in it
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return Client(uri)


def _quiet_store_logs() -> None:
    """MLflow announces table creation and migrations at INFO on stderr, and logs a failed
    database write with its whole traceback before raising it; gdfit says what happened in one
    line (`reason`)."""
    for name in ("alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def is_outage(error: BaseException) -> bool:
    """The server did not answer, or answered only with errors after MLflow's retries: worth
    trying again later, unlike a refusal (401, 403, 404, a bad request)."""
    return bool(_OUTAGE.match(str(error)))


def reason(error: BaseException) -> str:
    """What went wrong, in a few words, with any credential masked."""
    code = getattr(error, "error_code", None)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if code == "UNAUTHENTICATED":
        if not user:
            return (
                "authentication failed: the server asks for a user name and password "
                "(set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
            )
        return (
            f"authentication failed for user {user!r} "
            "(check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
        )
    if code == "PERMISSION_DENIED":
        return f"permission denied for user {user!r} (ask the server's admin for access)"
    text = str(error)
    if "failed with timeout exception" in text or "timed out" in text:
        return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '?')} s"
    if "NameResolutionError" in text:
        return "unknown host"
    database = re.search(r"\((?:sqlite3|psycopg2?|pymysql)\.\w+\) ([^\n]+)", text)
    if database:  # SQLAlchemy's wording around the database's own ("database or disk is full")
        return redact(database[1].strip())[:200]
    errno = re.search(r"\[Errno -?\d+\] ([^:\"')\]]+)(?:: '([^']+)')?", text)
    if errno:  # "Read-only file system: '/srv/store/artifacts/...'": say which (not gdfit's own
        path = errno[2] if errno[2] and "gdfit-run-" not in errno[2] else None  # staging copy)
        return errno[1].strip() + (f" ({redact(path)})" if path else "")
    statuses = re.search(r"too many (\d{3}) error responses", text)
    if statuses:
        return f"HTTP {statuses[1]} on every try"
    first = (text.strip().splitlines() or [type(error).__name__])[0]
    return redact(first)[:200]


def store_error(uri: str, error: BaseException, doing: str = "use the MLflow store at"):
    return TrackingError(f"cannot {doing} {redact(uri)}: {reason(error)}")


@contextmanager
def reading(uri: str, doing: str = "use the MLflow store at") -> Iterator[None]:
    """Reads are not retried: a failure is at once one TrackingError saying what happened."""
    try:
        yield
    except GdfitError:
        raise
    except Exception as error:
        raise store_error(uri, error, doing) from error


class Client(MlflowClient):
    """MlflowClient whose writes are redacted and wait out a server that went away.

    A write that finds the server away (no answer, refused connection, only 5xx answers) is
    tried again every RETRY_PAUSE seconds until `server_wait()` seconds have passed since the
    server stopped answering; after that every write fails at once with a TrackingError. A
    write with wait=False raises ServerAway instead of waiting, and is not even tried while the
    server was found away less than RETRY_PAUSE * 5 seconds ago (the loss curve's periodic flush:
    training goes on and its points are kept for the next flush). `create_run` is not
    retried (a lost answer would leave a second run): it fails at once.

    Files are one part and the rest another: a server whose artifact store fails (S3 away)
    still takes points and tags, so each part is said to be away, and back, on its own.
    """

    def __init__(self, uri: str):
        super().__init__(uri)
        self.uri = uri
        self.away: dict[str, float] = {}  # part ("server", "files") -> monotonic time it failed
        self.wait = server_wait()
        self.last_try: dict[str, float] = {}

    @property
    def away_since(self) -> float | None:
        """When the server stopped answering gdfit's writes other than files; None: it answers."""
        return self.away.get(SERVER)

    def _send(self, call, *args, wait: bool = True, part: str = "server", **kwargs):
        while True:
            since = self.away.get(part)
            if not wait and since and time.monotonic() - self.last_try[part] < 5 * RETRY_PAUSE:
                raise ServerAway(self.uri)
            self.last_try[part] = time.monotonic()
            try:
                result = call(*args, **kwargs)
            except Exception as error:
                if not is_outage(error):
                    raise store_error(self.uri, error) from error
                self._away(error, part)
                if not wait:
                    raise ServerAway(self.uri) from error
                if time.monotonic() - self.away[part] > self.wait:
                    raise TrackingError(
                        f"cannot use the MLflow store at {redact(self.uri)}: "
                        f"{_failing(part, error)} for {self.wait:g} s ({reason(error)})"
                    ) from error
                time.sleep(RETRY_PAUSE)
                continue
            if self.away.pop(part, None) is not None:
                back = "is back" if part == SERVER else "stores files again"
                _say(f"gdfit: the MLflow server at {redact(self.uri)} {back}")
            return result

    def _away(self, error: BaseException, part: str) -> None:
        if part not in self.away:
            self.away[part] = time.monotonic()
            state, keeping = ("is unavailable", "data")
            if part == FILES:
                state, keeping = "cannot store files", "files"
            _say(
                f"gdfit: warning: the MLflow server at {redact(self.uri)} {state} "
                f"({reason(error)}); keeping the run's {keeping} and trying again for up to "
                f"{self.wait:g} s"
            )

    # Every write gdfit makes, redacted. Keys are gdfit's own names and stay as they are; an
    # experiment's name is the user's, filtered when it is made and when it is looked up.

    def create_experiment(self, name, artifact_location=None, tags=None):
        return super().create_experiment(redact(name), artifact_location, redact_data(tags))

    def get_experiment_by_name(self, name):
        return super().get_experiment_by_name(redact(name))

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        with reading(self.uri):
            return super().create_run(
                experiment_id, start_time, redact_data(tags), redact_data(run_name)
            )

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None, wait=True):
        params = [Param(p.key, redact(str(p.value))) for p in params]
        tags = [RunTag(t.key, redact(str(t.value))) for t in tags]
        send = super().log_batch
        return self._send(send, run_id, metrics, params, tags, synchronous, wait=wait)

    def log_param(self, run_id, key, value, synchronous=None):
        return self._send(super().log_param, run_id, key, redact(str(value)), synchronous)

    def set_tag(self, run_id, key, value, synchronous=None):
        return self._send(super().set_tag, run_id, key, redact(str(value)), synchronous)

    def set_experiment_tag(self, experiment_id, key, value):
        return super().set_experiment_tag(experiment_id, key, redact(str(value)))

    def log_text(self, run_id, text, artifact_file):
        return self._send(super().log_text, run_id, redact(text), artifact_file, part=FILES)

    def log_dict(self, run_id, dictionary, artifact_file):
        send = super().log_dict
        return self._send(send, run_id, redact_data(dictionary), artifact_file, part=FILES)

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        return self._send(super().log_artifacts, run_id, local_dir, artifact_path, part=FILES)

    def delete_tag(self, run_id, key):
        return self._send(super().delete_tag, run_id, key)

    def set_terminated(self, run_id, status=None, end_time=None):
        return self._send(super().set_terminated, run_id, status, end_time)


SERVER, FILES = "server", "files"  # the parts of a store that fail apart (Client.away)


def _failing(part: str, error: BaseException) -> str:
    """How a part failed, for the line that gives up: no file stored, no answer, or only
    errors (the server answered, with 5xx)."""
    if part == FILES:
        return "no file stored"
    return (
        "only errors" if re.search(r"too many \d{3} error responses", str(error)) else "no answer"
    )


def server_wait() -> float:
    """How long a run waits for a server that went away: GDFIT_SERVER_WAIT seconds, else
    RETRY_SECONDS. What it still holds then is kept on disk (gdfit.outbox)."""
    text = os.environ.get("GDFIT_SERVER_WAIT")
    if text is None:
        return RETRY_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e6:
        raise ConfigError("GDFIT_SERVER_WAIT", "must be a number of seconds, 0 to 999999", text)
    return seconds


class ServerAway(TrackingError):
    """A write with wait=False found the server away; what it carried is still to be sent."""

    def __init__(self, uri: str):
        super().__init__(f"the MLflow server at {redact(uri)} is unavailable")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

"""Credentials never leave the process: every text gdfit records or prints passes `redact`.

Two kinds of secret are masked as `***`:
- what a URI carries: its userinfo (`http://alice:pw@host` -> `http://***@host`) and the values
  of query parameters named like a credential (`?token=...`, `?sslpassword=...`);
- the value of any environment variable whose name contains PASSWORD, SECRET, TOKEN or KEY
  (`MLFLOW_TRACKING_PASSWORD`, `AWS_SECRET_ACCESS_KEY`, ...), wherever it appears.

Values of such variables that cannot be a credential are left alone so that they do not mask
ordinary text: shorter than 4 characters, a number, or a word like `true`
(`TOKENIZERS_PARALLELISM=false` must not turn every `false` in config.yaml into `***`).
"""

import logging
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
_NOT_SECRET = {"true", "false", "yes", "no", "on", "off", "none", "null"}
# scheme://userinfo@ up to the netloc's last @, as URL parsers split it (`u:p@ss@host`);
# Hydra escapes colons in the overrides it prints (`http\://u\:p@host`).
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*\\?://)[^/?#\s'\"]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"([?&;][^=&#\s'\"]*(?:pass|secret|token|key|auth|sig|cred)[^=&#\s'\"]*=)[^&#\s'\"]+",
    re.IGNORECASE,
)


def public_uri(uri: str) -> str:
    """`uri` with any user:password@ part and its query string removed: an address fit to
    print, store or build other addresses on (the UI's)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None and not parts.query:
        return uri
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment))


def is_public(uri: str) -> bool:
    """Whether `uri` carries nothing that `public_uri` would remove (it may go into files)."""
    return public_uri(uri) == uri


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the credential-like variables in `environ` (default: this process's),
    longest first so that a value containing another is masked whole."""
    environ = os.environ if environ is None else environ
    # Names first, values by name: another thread (MLflow's telemetry) may remove a variable
    # meanwhile, which an iteration over items() meets as a KeyError.
    values = (environ.get(name) for name in list(environ) if SECRET_NAME.search(name))
    found = {value for value in values if value is not None and _could_be_secret(value)}
    return sorted(found, key=len, reverse=True)


def _could_be_secret(value: str) -> bool:
    if len(value) < 4 or value.strip().lower() in _NOT_SECRET:
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with URI credentials and credential-variable values replaced by `***`.
    `secrets`: `secret_values()`, when the caller has them already."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    return text


def redact_data(data: Any, secrets: list[str] | None = None) -> Any:
    """`redact` applied to every string inside nested dicts, lists and tuples (keys too); the
    environment is read once for all of them."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, Mapping):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(redact_data(v, secrets) for v in data)
    return data


def redact_logs() -> None:
    """Mask credentials in every log record this process makes from now on, such as Hydra's
    launch lines (`#0 : tracking.uri=http\\://alice\\:pw@host ...`). Done where records are
    made, since Hydra replaces the logging handlers when it launches jobs."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacting(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # a malformed record: logging reports it as it always has
            pass
        return record

    redacting.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)

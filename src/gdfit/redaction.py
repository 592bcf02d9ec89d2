"""Credentials never leave the process: every text gdfit records or prints passes `redact`.

Two kinds of secret are masked as `***`:
- what a URI carries: its userinfo (`http://alice:pw@host` -> `http://***@host`) and the values
  of query parameters named like a credential (`?token=...`, `?sslpassword=...`, `?pwd=...`);
- the value of any environment variable whose name contains PASSWORD, SECRET, TOKEN or KEY
  (`MLFLOW_TRACKING_PASSWORD`, `AWS_SECRET_ACCESS_KEY`, ...), wherever it appears.

A password may hold any character, `'`, `/`, `#`, `@`, `?` and spaces included, typed raw or
escaped by a shell, YAML, JSON or Hydra. So the userinfo of a URI is everything from its
`scheme://` to the last `@` on that line that a host follows, before another URI begins: where
a URI ends is unsure, so more is masked rather than less (`http://host/x by bob@example.org`
loses `host/x by bob`).

A query parameter is a credential when a word of its name says so (`token`, `password`, `pwd`,
`secret`, `sig`, `signature`, `credential`, `auth`, ...), or when its name ends in a key that
opens something (`key`, `apiKey`, `access_key`, `subscription-key`); the name of a key is not a
credential (`viewStateShareKey=gdfit`, `sortKey=...` stay as they are).

Values of such variables that cannot be a credential are left alone so that they do not mask
ordinary text: shorter than 4 characters, a number, or a word like `true`
(`TOKENIZERS_PARALLELISM=false` must not turn every `false` in config.yaml into `***`).
"""

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
_NOT_SECRET = {"true", "false", "yes", "no", "on", "off", "none", "null"}
# scheme:// (Hydra escapes it `http\://`), then up to the line's last @ that a host follows
# before the next URI's scheme://.
_USERINFO = re.compile(
    r"\b([a-z][a-z0-9+.-]*\\?://)(?:(?!\\?://)[^\n])*@(?=[\w\[%-])", re.IGNORECASE
)
# name=value after ? & or ; the value up to & # or a space, less the quotes, brackets and
# commas that close the text around it (`'...?token=x'`, `["...?token=x", ...]`)
_QUERY = re.compile(r"([?&;])([^=&#?;\s'\"]+)=([^&#\s]*[^&#\s'\")\]},;])")
# Words of a parameter's name that make its value a credential: anywhere in a word ...
_SECRET_PART = re.compile(r"passw|secret|token|credential|signature|apikey|jwt")
# ... or as a whole word; and a key that opens something, not the name of one.
_SECRET_WORDS = {"pass", "pwd", "pw", "sig", "auth", "authorization", "session", "sas"}
_KEY_OPENS = {"api", "access", "secret", "private", "signing", "subscription", "auth", "account"}
_KEY_OPENS |= {"client", "master", "encryption", "license", "sas"}


def is_credential_name(name: str) -> bool:
    """Whether a query parameter called `name` carries a credential: `token`, `sslpassword`,
    `X-Amz-Signature`, `key`, `api_key`; not `viewStateShareKey` or `page`."""
    name = name.replace("\\", "")  # as Hydra prints it: `pwd\\=...`
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)  # viewStateShareKey -> view State ...
    words = [w for w in re.split(r"[\s_.\-]+", spaced.lower()) if w]
    if not words:
        return False
    if any(_SECRET_PART.search(w) or w in _SECRET_WORDS for w in words):
        return True
    if words[-1] not in ("key", "keys"):
        return False
    return len(words) == 1 or words[-2] in _KEY_OPENS


def _mask_query(found: re.Match) -> str:
    lead, name, value = found.groups()
    return f"{lead}{name}={MASK}" if is_credential_name(name) else found[0]


def public_uri(uri: str) -> str:
    """`uri` with any user:password@ part and its query string removed: an address fit to
    print, store or build other addresses on (the UI's). The userinfo is what `redact` masks,
    whatever its characters."""
    found = _USERINFO.match(uri)
    if found:
        uri = found[1] + uri[found.end() :]
    head, hash_, fragment = uri.partition("#")
    return head.partition("?")[0] + hash_ + fragment


def has_userinfo(uri: str) -> bool:
    """Whether `uri` holds a user name or password, as `redact` sees one (whatever its
    characters; a parser may cut it short at a raw `/`, `#`, `?` or space)."""
    return _USERINFO.match(uri) is not None


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
    text = _QUERY.sub(_mask_query, text)  # first: a raw @ in a value is not a userinfo's end
    text = _USERINFO.sub(rf"\1{MASK}@", text)
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

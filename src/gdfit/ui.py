"""gdfit-ui: the MLflow UI over a local gdfit store, opened on gdfit's view of the runs.

It starts `mlflow server` on the store, bound to loopback, and prints the address of gdfit's
view (see views.py): runs grouped by sweep, best first, losses on log axes, through a page that
keeps MLflow's assistant panel from opening itself over it (uiapp.py). The server runs in
its own process group with its log held back, so Ctrl-C stops all of it at once and quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import webbrowser
from importlib.metadata import entry_points
from pathlib import Path

from gdfit import environment, store, uiapp, views
from gdfit.errors import ConfigError, GdfitError, Stopped, UsageError, reported_errors
from gdfit.redaction import public_uri, redact
from gdfit.store import add_tracking_uri

STOP_SECONDS = 1.5  # after SIGTERM, how long the server may take before it is killed
SPARE_PORTS = 20  # when the default port is taken, the next ports tried before any free one
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The server's environment: no usage reports, and no job runner (MLflow's GenAI scorers and
# schedulers; gdfit has no jobs, and its scheduler logs and worker processes cost start-up).
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
SERVER_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gdfit-ui",
        description="Serve the MLflow UI over a local gdfit store, opened on gdfit's view of "
        "the runs (grouped by sweep, best first, losses on log axes).",
        epilog="Ctrl-C stops the server. Given a tracking server (an http:// URI), which has "
        "its own UI, it prints the address of gdfit's view there instead.",
    )
    add_tracking_uri(parser)
    parser.add_argument(
        "--experiment",
        default="gdfit",
        metavar="NAME",
        help="the experiment whose runs to show (default: gdfit)",
    )
    parser.add_argument(
        "--host",
        default=views.UI_HOST,
        help="address to listen on (default: 127.0.0.1, this machine only; read Security in "
        "docs/team-server.md before widening it)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default: {views.UI_PORT}, or the next free one if it is taken)",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        metavar="NAMES",
        help="comma-separated host names that browsers use to reach a non-loopback --host "
        "(MLflow refuses requests for any other name)",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="start an empty store if there is none at the given path (default: refuse, "
        "so a mistyped path is not served as an empty store)",
    )
    parser.add_argument(
        "--open", action="store_true", help="also open the address in a web browser"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the MLflow server's own log (every request, warnings)",
    )
    return parser.parse_args(argv)


def wait_until_healthy(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    """Return once `url` answers /health while `proc` runs; GdfitError if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GdfitError(f"the MLflow server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise GdfitError(f"the MLflow server did not answer at {url} within {seconds:.0f} s")


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def holder(url: str) -> str:
    """Who holds a taken port, as far as an HTTP request tells."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            if answer.read(16).strip() == b"OK":
                return "another MLflow server"
    except OSError:
        pass
    return "another program"


def choose_port(host: str, asked: int | None, local_url) -> int:
    """The port to serve on: `asked` if free, else a one-line error naming --port; without
    --port the default, or the next free port, saying so."""
    if asked is not None:
        if not 1 <= asked <= 65535:
            raise ConfigError("--port", "must be a port number from 1 to 65535", asked)
        if not port_free(host, asked):
            raise GdfitError(
                f"port {asked} on {host} is taken by {holder(local_url(asked))}; "
                "choose a free one with --port"
            )
        return asked
    for port in range(views.UI_PORT, views.UI_PORT + SPARE_PORTS):
        if port_free(host, port):
            break
    else:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    if port != views.UI_PORT:
        print(
            f"gdfit-ui: port {views.UI_PORT} is taken by {holder(local_url(views.UI_PORT))}; "
            f"serving on port {port} instead (--port chooses)",
            file=sys.stderr,
            flush=True,
        )
    return port


def check_store(uri: str, create: bool) -> None:
    """Refuse a sqlite store that does not exist yet, unless asked to create one."""
    assert store.sqlite_path(uri) is not None, uri  # serve() took only sqlite stores
    db = store.missing_store(uri)
    if db is None or create:
        return
    hint = f"{store.first_run_hint(db)}, " if store.first_run_hint(db) else ""
    raise ConfigError(
        "--tracking-uri",
        f"no MLflow store at {db}; check the path, or {hint}pass --create to start an empty one",
    )


def check_experiment(uri: str, name: str) -> None:
    """Refuse an experiment the store does not hold (a typo would otherwise create it)."""
    try:
        names = store.experiment_names(uri)
    except Exception:
        return  # open_experiment says what is wrong with the store
    if redact(name) not in names:  # stored as the filter left it
        raise UsageError(
            f"no experiment {name!r} in {public_uri(uri)}; experiments there: "
            f"{', '.join(names) or 'none'} (--create starts it)"
        )


def warn_exposed(host: str, allowed_hosts: str | None) -> None:
    if host in LOOPBACK or allowed_hosts:
        return
    print(
        f"gdfit-ui: warning: --host {host} lets every machine that reaches this one read and "
        "change the runs, with no password; MLflow answers only requests addressed to "
        "localhost or a private IP unless --allowed-hosts names the host names browsers use "
        "(README: A team tracking server)",
        file=sys.stderr,
        flush=True,
    )


def server_command(args: argparse.Namespace, uri: str, port: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts"),
        "--host",
        args.host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--app-name",
        uiapp.APP_NAME,  # MLflow's app plus the page that keeps the assistant panel shut
    ]
    if not args.verbose:
        command += ["--uvicorn-opts", "--no-access-log"]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    return command


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after STOP_SECONDS."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_words(log) -> str:
    """The server's last meaningful log line, to say why it stopped."""
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Traceback", "File "))]
    return lines[-1][:300] if lines else "no output"


def serve(args: argparse.Namespace) -> int:
    os.environ.update(SERVER_ENV)  # no usage reports from this process either
    uri = store.resolve_uri(args.tracking_uri, "--tracking-uri")
    if uri.startswith(("http://", "https://")):
        return point_at_server(uri, args)
    if store.sqlite_path(uri) is None:
        raise ConfigError(
            "--tracking-uri",
            "gdfit-ui serves a local sqlite store; for a database, run mlflow server on it "
            "and open its address",
            public_uri(uri),
        )
    check_store(uri, args.create)
    if not args.create:
        check_experiment(uri, args.experiment)
    warn_exposed(args.host, args.allowed_hosts)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host

    def local_url(port: int) -> str:
        return f"http://{shown_host}:{port}"

    port = choose_port(args.host, args.port, local_url)
    _, experiment_id = store.open_experiment(uri, args.experiment)
    return run_server(args, uri, port, local_url(port), experiment_id)


def check_app_installed() -> None:
    """`mlflow server --app-name` finds gdfit's app through the package's metadata, which an
    editable install made before the app existed lacks."""
    if not entry_points(group="mlflow.app", name=uiapp.APP_NAME):
        raise GdfitError(
            f"gdfit's MLflow app ({uiapp.APP_NAME}) is not in this environment's package "
            "metadata; reinstall gdfit (pip install -e .)"
        )


def run_server(args: argparse.Namespace, uri: str, port: int, url: str, experiment_id: str) -> int:
    """Serve until Ctrl-C (0) or the server's end (an error saying why it ended)."""
    check_app_installed()
    env = {**SERVER_DEFAULTS, **environment.variables()}  # read safely from threads
    if not args.verbose:
        env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryFile() as log:
        output = None if args.verbose else log
        proc = subprocess.Popen(
            server_command(args, uri, port),
            stdout=sys.stderr if args.verbose else output,
            stderr=output,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches gdfit-ui only; it stops the whole group
        )
        try:
            try:
                wait_until_healthy(url, proc)
            except GdfitError as error:
                why = "see its log above" if args.verbose else last_words(log)
                raise GdfitError(f"{error}: {why}") from None
            if proc.poll() is not None:  # /health was answered by someone else
                raise GdfitError(f"the MLflow server could not listen on {url}")
            view = uiapp.landing(views.page(url, experiment_id))
            charts = uiapp.landing(views.page(url, experiment_id, charts=True))
            print(
                f"MLflow UI over {uri}, experiment {args.experiment!r}:\n"
                f"  runs:   {view}\n"
                f"  charts: {charts}\n"
                "Ctrl-C stops it.",
                flush=True,
            )
            if args.open:
                open_in_browser(view)
            code = proc.wait()
            why = "see its log above" if args.verbose else last_words(log)
            raise GdfitError(f"the MLflow server stopped (exit code {code}): {why}")
        except KeyboardInterrupt as interrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this
            stop(proc)
            if isinstance(interrupt, Stopped):
                raise
            print("gdfit-ui: stopped the MLflow server", file=sys.stderr, flush=True)
            return 0
        finally:
            if proc.poll() is None:
                stop(proc)


def point_at_server(uri: str, args: argparse.Namespace) -> int:
    """A tracking server serves its own UI: print (and open) gdfit's view there."""
    _, experiment_id = store.open_experiment(uri, args.experiment)
    view = views.address(uri, experiment_id)
    print(f"{public_uri(uri)} is an MLflow server with its own UI; gdfit's view there:\n  {view}")
    if args.open and view:
        open_in_browser(view)
    return 0


def open_in_browser(address: str) -> None:
    if not webbrowser.open(address):
        print("gdfit-ui: found no web browser to open; open the address above", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        code = serve(parse_args(argv))
    # Done: skip the interpreter's teardown of MLflow's modules (over a second on a busy
    # machine), which would stretch a Ctrl-C past a prompt stop.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

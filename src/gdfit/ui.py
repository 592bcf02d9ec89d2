"""`gdfit-ui`: the MLflow UI over gdfit's own store, on loopback, opened at the runs page.

MLflow 3's UI otherwise opens on a GenAI overview page; this prints the address of the
experiment's runs table instead. Ctrl-C stops the server.
"""

import argparse
import subprocess
import sys
import time
import urllib.request

from gdfit import tracking
from gdfit.cli import add_tracking_uri, reported_errors
from gdfit.errors import GdfitError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gdfit-ui", description=__doc__.splitlines()[0])
    add_tracking_uri(parser)
    parser.add_argument("--experiment", default="gdfit", help="whose runs page to open")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; see the README before widening)",
    )
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        help="MLflow's Host-header allow-list, needed when --host is not loopback",
    )
    return parser.parse_args(argv)


def wait_until_healthy(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
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


def serve(args: argparse.Namespace) -> int:
    uri = tracking.resolve_uri(args.tracking_uri)
    if not uri.startswith("sqlite:///"):
        raise GdfitError(f"gdfit-ui serves a local sqlite store; {uri} is served already")
    _, experiment_id = tracking.open_experiment(uri, args.experiment)
    store = tracking.sqlite_path(uri).parent
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(store / "artifacts"),
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    proc = subprocess.Popen(command, stdout=sys.stderr)  # server logs apart from the address
    url = f"http://{args.host}:{args.port}"
    try:
        wait_until_healthy(url, proc)
        print(
            f"MLflow UI for {uri}\n  runs of {args.experiment!r}: "
            f"{url}/#/experiments/{experiment_id}/runs\n  Ctrl-C stops it.",
            flush=True,
        )
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        try:
            sys.exit(serve(parse_args(argv)))
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()

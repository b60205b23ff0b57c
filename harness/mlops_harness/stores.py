"""The team's stores as real processes on this machine: PostgreSQL (Debian's, in a scratch
data folder), an S3-compatible object store (moto's server), and an MLflow tracking
server on both, with basic auth, installed from a project's deploy/mlflow/requirements.txt.
Each is started on a free port and stopped by its process group."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops_harness.paths import CACHE, exclusive, tool
from mlops_harness.processes import free_port, run, spawn, stop_group
from mlops_harness.servers import wait_for_http

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
CREDENTIALS = {  # moto accepts any keys; the clients must still send some
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def as_postgres(*args: str) -> list[str]:
    """PostgreSQL refuses to run as root: its programs run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


PASSWORD = {"PGPASSWORD": "postgres-password-for-tests"}  # the database user's, as a Secret


@contextmanager
def postgres(scratch: Path, databases: tuple[str, ...]) -> Iterator[str]:
    """A PostgreSQL server on a free loopback port, whose user ``mlflow`` logs in with
    ``PASSWORD`` (scram), with ``databases`` made; its address, with no password in it:
    ``postgresql+psycopg://mlflow@127.0.0.1:PORT``. Its data folder is a folder of its own
    under /tmp, which the postgres user owns (pytest's folders are root's alone)."""
    home = Path(tempfile.mkdtemp(prefix="postgres-"))
    data, secret = home / "data", home / "password"
    secret.write_text(PASSWORD["PGPASSWORD"])
    if os.geteuid() == 0:
        for path in (home, secret):
            shutil.chown(path, "postgres")
    log = scratch / "postgres.log"
    scratch.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        initdb = [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "mlflow"]
        run(as_postgres(*initdb, "-A", "scram-sha-256", f"--pwfile={secret}"), home)
        port = free_port()
        server = [str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(port)]
        server += ["-k", str(home), "-h", "127.0.0.1"]
        process = spawn(as_postgres(*server), log, os.environ, cwd=home)
        address = ["-h", "127.0.0.1", "-p", str(port)]
        for _ in range(100):
            ready = subprocess.run(
                [str(POSTGRES_BIN / "pg_isready"), *address], capture_output=True, check=False
            )
            if ready.returncode == 0:
                break
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        for name in databases:
            createdb = [str(POSTGRES_BIN / "createdb"), *address, "-U", "mlflow", name]
            run(createdb, home, {**os.environ, **PASSWORD})
        yield f"postgresql+psycopg://mlflow@127.0.0.1:{port}"
    finally:
        if process is not None:
            stop_group(process)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def object_store(scratch: Path, bucket: str) -> Iterator[str]:
    """moto's S3-compatible server on a free port, with ``bucket`` made; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "object-store.log"
    process = spawn([tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log, os.environ)
    try:
        wait_for_http(f"{url}/moto-api/", process)
        create = (
            "import boto3, sys; "
            "boto3.client('s3', endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])"
        )
        run([sys.executable, "-c", create, url, bucket], scratch, {**os.environ, **CREDENTIALS})
        yield url
    finally:
        stop_group(process)


def server_env(requirements: Path) -> Path:
    """An environment with a project's deploy/mlflow/requirements.txt, made once per
    version of that file and cached."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"mlflow-team-server-{digest}"
    with exclusive(venv.name):
        if not (venv / "bin" / "mlflow").exists():
            python = str(Path(tool("python")))
            run([tool("uv"), "venv", "--quiet", "--python", python, str(venv)], CACHE)
            run([tool("uv"), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                 "--requirement", str(requirements)], CACHE)  # fmt: skip
    return venv


@dataclass(frozen=True)
class TeamServer:
    url: str
    bucket: str
    store: str  # the object store's URL
    database: str  # PostgreSQL's address
    python: Path  # the server's environment (it has psycopg and boto3)
    admin: tuple[str, str]

    def login(self, username: str, password: str) -> dict[str, str]:
        """A client's environment for this server, logged in as ``username``."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": password,
        }

    def add_user(self, username: str, password: str) -> dict[str, str]:
        """A new login (made by the admin, as the auth.ini says); its client environment."""
        answer = httpx.post(
            f"{self.url}/api/2.0/mlflow/users/create",
            json={"username": username, "password": password},
            auth=self.admin,
            timeout=30,
        )
        answer.raise_for_status()
        return self.login(username, password)

    def objects(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` in the artifact bucket."""
        script = (
            "import boto3, json, sys; s3 = boto3.client('s3', endpoint_url=sys.argv[1]); "
            "pages = s3.get_paginator('list_objects_v2')"
            ".paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]); "
            "print(json.dumps([o['Key'] for p in pages for o in p.get('Contents', [])]))"
        )
        env = {**os.environ, **CREDENTIALS}
        listed = run([str(self.python), "-c", script, self.store, self.bucket, prefix], CACHE, env)
        keys: list[str] = json.loads(listed.stdout)
        return keys

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Rows of ``sql`` on the server's database."""
        script = (
            "import json, sys, psycopg; c = psycopg.connect(sys.argv[1]); "
            "print(json.dumps([list(r) for r in c.execute(sys.argv[2]).fetchall()], default=str))"
        )
        uri = self.database.replace("postgresql+psycopg://", "postgresql://") + "/mlflow"
        env = {**os.environ, **PASSWORD}
        rows = json.loads(run([str(self.python), "-c", script, uri, sql], CACHE, env).stdout)
        return [tuple(row) for row in rows]


@contextmanager
def team_server(deploy: Path, scratch: Path) -> Iterator[TeamServer]:
    """The project's team server (``deploy``: its deploy/mlflow folder), started by its
    serve.sh as its image starts it: `mlflow server --app-name basic-auth` on PostgreSQL
    (runs, registry, logins) and the object store (artifacts, proxied), set by environment
    variables as its Dockerfile says, with a first admin."""
    venv = server_env(deploy / "requirements.txt")
    bucket = "team-mlflow"
    with (
        postgres(scratch / "db", ("mlflow", "mlflow_auth")) as database,
        object_store(scratch / "s3", bucket) as store,
    ):
        admin = ("admin", "admin-password-for-tests")
        port = free_port()
        env: Mapping[str, str] = {
            **os.environ,
            **CREDENTIALS,
            **PASSWORD,
            "MLFLOW_BACKEND_STORE_URI": f"{database}/mlflow",
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/mlflow",
            "MLFLOW_S3_ENDPOINT_URL": store,
            "MLFLOW_AUTH_CONFIG_PATH": str(deploy / "auth.ini"),
            "MLFLOW_AUTH_DATABASE_URI": f"{database}/mlflow_auth",
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(port),
            "TMPDIR": str(scratch),
            "PATH": os.pathsep.join([str(venv / "bin"), os.environ["PATH"]]),
            "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-for-tests",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        # As the image starts it: its serve.sh (here with one worker).
        serve = ["sh", str(deploy / "serve.sh"), "--workers", "1"]
        process = spawn(serve, scratch / "server.log", env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{url}/health", process, timeout=120)
            yield TeamServer(url, bucket, store, database, venv / "bin" / "python", admin)
        finally:
            stop_group(process, timeout=30)


class Relay:
    """A TCP relay in front of a server (a store, say): ``cut()`` closes it and every
    connection through it, so that clients meet a dead endpoint (connections refused, and
    those open reset), and ``mend()`` opens it again on the same port. The server behind
    it keeps what it holds, as a store that came back does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mend(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # A close alone leaves the socket listening while the accepting thread is
            # blocked in accept(): the next client would still get through. A shutdown
            # wakes that thread and stops the listening, so clients are refused.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()
            with self._lock:
                self._open -= {source, sink}

"""A generated project's service running as a real process (``serving``), and waiting on
a service: until it answers, is ready, serves a given model version."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from mlops_harness.processes import free_port, stop_group
from mlops_harness.projects import Project


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before answering")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """From level 3 the service is alive (/health) before its model is loaded (/ready);
    below it there is no /ready (404), and alive means ready."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/ready", timeout=10).status_code == 503:
        if process.poll() is not None or time.monotonic() > deadline:
            return  # let the test see the service as it is
        time.sleep(0.2)


def served_by(predicted: str) -> str | None:
    """The registry version `make predict` said it predicted with ("predict:
    models:/<name>/<version>, as the service serves it"), if it named one."""
    found = re.search(r"predict: models:/[^/\s]+/(\d+)", predicted)
    return found.group(1) if found else None


def wait_until_serving(url: str, version: str | None, timeout: float = 60) -> None:
    """From level 4 the service reloads a new champion within SERVING_RELOAD_SECONDS: wait
    until its /version is ``version`` (a service with no /version, or no version to wait
    for: at once)."""
    deadline = time.monotonic() + timeout
    while version is not None and time.monotonic() < deadline:
        answer = httpx.get(f"{url}/version", timeout=10)
        if answer.status_code != 200 or answer.json().get("version") == version:
            return
        time.sleep(0.5)


@dataclass
class Server:
    """A generated project's service, running as a real process."""

    url: str
    process: subprocess.Popen[bytes]
    stdout: Path  # a file, not a pipe: an unread pipe fills up and blocks the server

    def stop(self) -> str:
        """Stop it (the whole process group: make and the Python it started); its output."""
        stop_group(self.process)
        return self.stdout.read_text()


@contextmanager
def serving(
    project: Project, stdout: Path, ready: bool = True, port: int | None = None, **settings: str
) -> Iterator[Server]:
    """`make serve` on ``port`` (else a free one), answering `/health` (and, with ``ready``,
    `/ready` once it can: a test of a service with no model yet says ``ready=False``);
    stopped by its process group. ``settings`` are more environment variables
    (``SERVING_LOG_LEVEL=...``)."""
    port = port or free_port()
    with stdout.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "serve", *project.tools.make_variables],
            cwd=project.path,
            env=project.tools.env_for(project.path, SERVING_PORT=str(port), **settings),
            stdout=sink,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Server(f"http://127.0.0.1:{port}", process, stdout)
    try:
        wait_for_http(f"{running.url}/health", process)
        if ready:
            wait_until_ready(running.url, process)
        yield running
    finally:
        running.stop()


def service_pid(project: Project, server: Server) -> int:
    """The service's Python process, in the process group `make serve` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if group == server.process.pid and f"{project.package}.serving".encode() in command:
            return int(entry.name)
    raise AssertionError("the service's process is not running")


def post_raw(
    url: str, path: str, chunks: Iterable[bytes], length: int | None = None, pause: float = 0
) -> tuple[int, str]:
    """POST ``chunks`` over a bare socket (with ``length``: a Content-Length; without: a
    chunked body), reading the answer while it sends, as a client that does not stop when
    the server does; the answer's status and body (0, "" if none came)."""
    host, port = url.removeprefix("http://").split(":")
    received = bytearray()
    with socket.create_connection((host, int(port)), timeout=30) as sock:

        def read() -> None:
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    received.extend(data)

        reader = threading.Thread(target=read)
        reader.start()
        framing = (
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        )
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        with contextlib.suppress(OSError):  # the server may close on it half-way: it should
            sock.sendall(f"{head}{framing}\r\n\r\n".encode())
            for chunk in chunks:
                sock.sendall(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                time.sleep(pause)
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        reader.join(timeout=30)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode(errors="replace")


class PostRecorder:
    """An HTTP server on a free loopback port that records each POST it is sent (its
    path, its headers by lower-case name, its JSON body, when it came by time.monotonic)
    and answers ``status`` with an empty JSON object."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(
                    {
                        "path": self.path,
                        "headers": {name.lower(): value for name, value in self.headers.items()},
                        "body": json.loads(self.rfile.read(length) or b"{}"),
                        "received": time.monotonic(),
                    }
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class AlertReceiver(PostRecorder):
    """A webhook receiver for Alertmanager: every notification it is sent (Alertmanager's
    webhook JSON), firing or resolved, each alert stamped with when it came."""

    @property
    def notifications(self) -> list[dict[str, Any]]:
        found = []
        for request in list(self.requests):
            for alert in request["body"]["alerts"]:
                alert["received"] = request["received"]
            found.append(request["body"])
        return found

    @property
    def url(self) -> str:
        return f"{self.address}/alerts"

    def alerts(self, name: str, status: str, since: int = 0) -> list[dict[str, Any]]:
        """The alerts named ``name`` received with ``status`` (firing, resolved), in the
        notifications from the ``since``-th on."""
        return [
            alert
            for notification in list(self.notifications)[since:]
            for alert in notification["alerts"]
            if alert["labels"]["alertname"] == name and alert["status"] == status
        ]

    def wait_for(
        self, name: str, status: str, timeout: float = 60, since: int = 0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.alerts(name, status, since)
            if found:
                return found
            time.sleep(0.2)
        everything = [alert for sent in self.notifications for alert in sent["alerts"]]
        seen = sorted({(alert["labels"]["alertname"], alert["status"]) for alert in everything})
        raise AssertionError(f"no {status} {name} in {timeout:g} s; received: {seen}")

"""A generated project's service running as a real process (``serving``), and waiting on
a service: until it answers, is ready, serves a given model version."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    project: Project, stdout: Path, ready: bool = True, **settings: str
) -> Iterator[Server]:
    """`make serve` on a free port, answering `/health` (and, with ``ready``, `/ready` once
    it can: a test of a service with no model yet says ``ready=False``); stopped by its
    process group. ``settings`` are more environment variables (``SERVING_LOG_LEVEL=...``)."""
    port = free_port()
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

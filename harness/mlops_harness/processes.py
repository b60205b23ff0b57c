"""Commands and processes: one command run to its end (``run``, ``git``), a long-running
one in a session of its own (``spawn``, ``stop_group``), a free port, a growing log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Never let a test talk to a real git identity or the network by accident.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Run:
    """A command's result, with both streams kept for the failure message."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n(exit {self.returncode})\n"
            f"--- stdout ---\n{clip(self.stdout)}\n--- stderr ---\n{clip(self.stderr)}"
        )


def clip(text: str, keep: int = 20000) -> str:
    """Long output without its middle: failures show up at the start or the end."""
    if len(text) <= 2 * keep:
        return text
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters ...]\n{text[-keep:]}"


def run(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> Run:
    completed = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    result = Run(list(args), completed.returncode, completed.stdout, completed.stderr)
    if check:
        assert result.returncode == 0, str(result)
    return result


def git(cwd: Path, *args: str, check: bool = True) -> Run:
    return run(["git", *args], cwd, env={**os.environ, **GIT_ENV}, check=check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def appended(log: Path, offset: int, lines: int, timeout: float = 30) -> bytes:
    """What ``log`` gained past ``offset`` bytes, once that is ``lines`` lines or more (a
    service writes its logs off the request path, once a second), or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as handle:
            handle.seek(offset)
            added = handle.read()
        if added.count(b"\n") >= lines or time.monotonic() > deadline:
            return added
        time.sleep(0.1)


def spawn(
    args: list[str], output: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A long-running command (a server) in a session of its own, so that stop_group ends
    it with everything it starts; its output goes to the file ``output`` (a pipe nobody
    reads fills up and blocks it)."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Interrupt a process started in its own session, with everything it started; kill
    the group if it has not ended within ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

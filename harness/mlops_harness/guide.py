"""A generated project's guide, executed as a user would follow it: every command of its
shell blocks, in order, in a plain shell (see ``environments.user_env``).

The guide marks what a plain run cannot show by itself, in a comment after the command,
which a reader sees too (the guide's opening paragraph says what they mean):

- ``# keeps running`` starts a server: it runs in a terminal of its own (a process in its
  own session here) until the guide is done, and the next command waits until the first
  URL of the comment answers (not with a 5xx);
- ``# shows "text"`` is text the command's output holds;
- ``# not tested here: why`` is a command no test machine can run.

Every other command must exit 0. The commands of one block run in one shell session, as a
user types them into one terminal (``source .venv/bin/activate`` holds until the block
ends); a server's command ends the session, and the commands after it run in a new one.
Ports: the guide says 8000 (the service), 5000 (the MLflow UI) and 9090, 9093, 9091 (the
operations stack); each is replaced by a free port, in the commands and in the
environment (PORTS' variables), so that guides run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mlops_harness.processes import free_port, stop_group

BLOCK = re.compile(r"^```(?:bash|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMENT = re.compile(r"\s{2,}#\s(.*)$")  # a comment: two spaces or more, then "# "
SHOWS = re.compile(r'shows "([^"]+)"')
URL = re.compile(r"https?://[^\s,;)]+")
PORTS = {  # the guide's ports: their variables
    "8000": "SERVING_PORT",
    "5000": "UI_PORT",
    "9090": "OBSERVE_PROMETHEUS_PORT",
    "9093": "OBSERVE_ALERTMANAGER_PORT",
    "9091": "OBSERVE_PUSHGATEWAY_PORT",
}
MARKER = "::guide-command::"
CWD_MARKER = "::guide-cwd::"


@dataclass(frozen=True)
class Command:
    """One command of a guide's shell block, as written, with what its comment says."""

    block: int
    text: str  # with its continuation lines
    note: str  # the comment after it, if any

    @property
    def keeps_running(self) -> bool:
        return self.note.startswith("keeps running")

    @property
    def skipped(self) -> str | None:
        prefix = "not tested here:"
        return self.note.removeprefix(prefix).strip() if self.note.startswith(prefix) else None

    @property
    def shows(self) -> list[str]:
        return SHOWS.findall(self.note)

    def __str__(self) -> str:
        return f"$ {self.text}" + (f"   # {self.note}" if self.note else "")


def commands(markdown: str) -> list[Command]:
    """The commands of every ``bash`` block of a Markdown text, in order."""
    found: list[Command] = []
    for block, match in enumerate(BLOCK.finditer(markdown)):
        lines: list[str] = []
        for line in match.group(1).splitlines():
            if lines and lines[-1].endswith("\\"):  # a continuation: kept as written
                lines[-1] += "\n" + line
            elif line.strip():
                lines.append(line)
        for line in lines:
            comment = COMMENT.search(line)
            text = line[: comment.start()] if comment else line
            found.append(Command(block, text.strip(), comment.group(1).strip() if comment else ""))
    return found


@dataclass
class Ran:
    """What one command did."""

    command: Command
    returncode: int | None = None  # None: skipped, or still running (a server)
    output: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        ran = f"exit {self.returncode}, {self.seconds:.1f} s"
        return f"{self.command}\n({ran})\n{self.output[-6000:]}"


def _localised(text: str, ports: Mapping[str, int]) -> str:
    for written, port in ports.items():
        text = text.replace(f"127.0.0.1:{written}", f"127.0.0.1:{port}")
    return text


def _session(
    batch: list[Command], cwd: Path, env: Mapping[str, str], ports: Mapping[str, int]
) -> tuple[list[Ran], Path]:
    """Run commands one after another in one bash session: each command's output, and
    the folder the session ended in (a `cd` holds for what comes after, as in a terminal)."""
    script = ["set -o pipefail"]
    for command in batch:
        script += [
            "__started=$EPOCHREALTIME",
            f"echo '{MARKER}'",
            _localised(command.text, ports),
            "__rc=$?",
            f"echo '{MARKER}'\"$__rc $__started $EPOCHREALTIME\"",
            '[ "$__rc" -eq 0 ] || exit "$__rc"',
        ]
    script.append(f"echo '{CWD_MARKER}'\"$PWD\"")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
        check=False,
    )
    output, _, ended_in = done.stdout.partition(CWD_MARKER)
    parts = output.split(MARKER)[1:]  # [output, code + output, code + output, ...]
    results = []
    for index, command in enumerate(batch):
        if 2 * index >= len(parts):
            break
        ended = parts[2 * index + 1].split("\n", 1)[0].split() if 2 * index + 1 < len(parts) else []
        code = int(ended[0]) if ended and ended[0].isdigit() else done.returncode
        seconds = float(ended[2]) - float(ended[1]) if len(ended) == 3 else 0.0
        results.append(Ran(command, code, parts[2 * index], seconds))
    return results, Path(ended_in.strip()) if ended_in.strip() else cwd


def _start(
    command: Command, cwd: Path, env: Mapping[str, str], ports: Mapping[str, int], log: Path
) -> subprocess.Popen[bytes]:
    """A server's command, in a session of its own; back once the comment's URL answers."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["bash", "-c", _localised(command.text, ports)],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    urls = URL.findall(_localised(command.note, ports))
    deadline = time.monotonic() + 180
    while urls and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(urls[0], timeout=5).status_code < 500:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_group(process)
    raise AssertionError(f"{command}: did not answer\n{log.read_text()[-4000:]}")


Hook = Callable[[], object]


@dataclass
class Guide:
    """A guide being run in ``cwd``: every command's outcome so far, and the servers it
    left running (``stop`` them; ``guided`` does)."""

    cwd: Path
    env: dict[str, str]
    logs: Path  # where the servers' output goes
    ran: list[Ran] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server_logs: list[Path] = field(default_factory=list)  # each server's output, as it goes
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {written: free_port() for written in PORTS}
        self.env = {**self.env, **{PORTS[p]: str(port) for p, port in self.ports.items()}}

    def url(self, port: str = "8000") -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def outcome(self, starts: str) -> Ran:
        """The last command run whose text starts with ``starts``."""
        matches = [ran for ran in self.ran if ran.command.text.startswith(starts)]
        assert matches, f"the guide runs no command starting {starts!r}"
        return matches[-1]

    def stop(self) -> None:
        for server in self.servers:
            stop_group(server)
        # What `make observe` started, if the guide stopped before its `make observe-down`:
        # each by the process id it recorded.
        recorded = self.cwd / ".observe" / "pids.json"
        if recorded.is_file():
            for pid in json.loads(recorded.read_text()).values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def summary(self) -> str:
        """Each command run, its exit status and time, and the line it showed (Markdown)."""
        rows = ["| command | exit | s | showed |", "|---|---|---|---|"]
        for ran in self.ran:
            lines = [line for line in ran.output.splitlines() if line.strip()]
            shown = next((line for line in lines if any(s in line for s in ran.command.shows)), "")
            status = (
                "not tested here" if ran.command.skipped is not None
                else "keeps running" if ran.returncode is None else str(ran.returncode)
            )  # fmt: skip
            command = ran.command.text.replace("\\\n", " ").replace("|", "\\|")
            showed = (shown or (lines[-1] if lines else ""))[:100].replace("|", "\\|")
            rows.append(f"| `{command}` | {status} | {ran.seconds:.1f} | {showed} |")
        return "\n".join(rows) + "\n"

    def run(self, batch: list[Command], around: Mapping[str, tuple[Hook, Hook]] = {}) -> None:
        """Run ``batch`` as its comments say; an AssertionError at the first command that
        fails or does not show what its comment says. ``around`` maps a command (its text,
        exactly) to what to call just before it and just after (it then runs on its own)."""
        pending: list[Command] = []
        for command in batch:
            hooks = around.get(command.text)
            if command.keeps_running or hooks or (pending and pending[-1].block != command.block):
                self._session(pending)
                pending = []
            if command.keeps_running:
                log = self.logs / f"server-{len(self.servers)}.log"
                self.servers.append(_start(command, self.cwd, self.env, self.ports, log))
                self.server_logs.append(log)
                self.ran.append(Ran(command))
            elif hooks:
                hooks[0]()
                self._session([command])
                hooks[1]()
            else:
                pending.append(command)
        self._session(pending)

    def _session(self, batch: list[Command]) -> None:
        """Run ``batch`` in one shell, but for the commands not tested here (they are
        recorded, in their place)."""
        executed = [command for command in batch if command.skipped is None]
        ran: list[Ran] = []
        if executed:
            ran, self.cwd = _session(executed, self.cwd, self.env, self.ports)
        results = iter(ran)
        done = [
            Ran(command) if command.skipped is not None else next(results, None)
            for command in batch
        ]
        self.ran.extend(ran for ran in done if ran is not None)
        for ran in done:
            if ran is None or ran.command.skipped is not None:
                continue
            if ran.returncode != 0 or not all(text in ran.output for text in ran.command.shows):
                raise AssertionError(f"a command of the guide failed, or did not show "
                                     f"{ran.command.shows}:\n{ran}")  # fmt: skip
        if None in done:
            raise AssertionError(f"the shell ended before {batch[done.index(None)]}")


@contextmanager
def guided(cwd: Path, env: Mapping[str, str], logs: Path) -> Iterator[Guide]:
    """A ``Guide`` for ``cwd``, its servers stopped at the end, whatever happened."""
    guide = Guide(cwd, dict(env), logs)
    try:
        yield guide
    finally:
        guide.stop()

"""Serving throughput before and after a change to the template, side by side in one run
on one machine: each side rendered at level 1 on the default dataset, installed in its
own environment, trained, and served as a real process; `wrk` posts one row and a batch
of rows to each in turn, alternating, round after round.

    .venv/bin/python scripts/benchmark_serving.py [--before d021dc7] [--seconds 10] [--rounds 3]

"before" is the template at the git ref --before; "after" is this working tree
(committed or not). Needs `wrk` (installed with apt-get when it is missing). Prints a
Markdown table and, for each body, the after/before throughput ratio against the budget.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import (  # noqa: E402
    Project,
    ProjectEnv,
    Server,
    git,
    open_project,
    render_project,
    run,
    serving,
    snapshot_template,
    tool,
)

LEVEL = 1
BUDGET = 0.10  # the change may cost at most this share of the throughput


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    """`wrk`, from Debian's archive when it is not installed yet."""
    found = shutil.which("wrk")
    if found:
        return found
    log("installing wrk (apt-get)")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        run(["apt-get", "update", "-q"], Path.cwd(), env)
        run(install, Path.cwd(), env)
    found = shutil.which("wrk")
    assert found, "apt-get installed wrk, but it is not on PATH"
    return found


def snapshot_ref(ref: str, destination: Path) -> Path:
    """The template as it was at ``ref``, as a fresh git repository with one tagged commit
    (what Copier copies from, like :func:`support.snapshot_template`)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True
    )
    destination.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    git(destination, "init", "--quiet", "--initial-branch=main")
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--message", f"Template at {ref}")
    git(destination, "tag", "v0.1.0")
    return destination


@dataclass
class Side:
    """One side of the comparison: a rendered project, installed in its own environment
    and trained."""

    name: str  # as the table shows it
    project: Project

    def example(self) -> dict[str, Any]:
        """The dataset's first row, as the project itself records it: the data contract's
        example, or (before contracts) the ``EXAMPLE`` dict in ``schema.py``."""
        contract = self.project.path / "data" / "contract.yaml"
        if contract.is_file():
            example: dict[str, Any] = yaml.safe_load(contract.read_text())["example"]
            return example
        schema = self.project.path / "src" / self.project.package / "schema.py"
        for node in ast.parse(schema.read_text()).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == "EXAMPLE" and node.value:
                value: dict[str, Any] = ast.literal_eval(node.value)
                return value
        raise AssertionError(f"{schema} has no EXAMPLE")


def build(name: str, folder: Path, template: Path) -> Side:
    """Render the template at level 1 (defaults) into ``folder``, install it into its own
    environment there (the two sides share a package name), then `make data` and
    `make train`."""
    log(f"{name}: render level {LEVEL} into {folder / 'project'}")
    destination = render_project(template, folder / "project", maturity_level=LEVEL)
    run([tool("uv"), "venv", "--quiet", "--python", sys.executable, str(folder / "venv")], folder)
    tools = ProjectEnv(venv=folder / "venv", pre_commit_home=folder / "pre-commit")
    side = Side(name, open_project(destination, tools))
    log(f"{name}: make install, make data, make train")
    side.project.make("install", "data", "train")
    return side


@dataclass(frozen=True)
class Body:
    name: str
    payload: Any
    script: Path  # wrk's Lua script that posts it


def lua_script(path: Path, payload: Any) -> Path:
    text = json.dumps(payload, separators=(",", ":"))
    assert "]==]" not in text, "the body would close the Lua long bracket"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{text}]==]\n"
    )
    return path


def check(side: Side, server: Server, body: Body) -> list[dict[str, Any]]:
    """The service answers the body with one prediction per row."""
    answer = httpx.post(f"{server.url}/predict", json=body.payload, timeout=60)
    assert answer.status_code == 200, f"{side.name}, {body.name}: {answer.text}"
    predictions: list[dict[str, Any]] = answer.json()["predictions"]
    rows = len(body.payload) if isinstance(body.payload, list) else 1
    assert len(predictions) == rows, f"{side.name}: {len(predictions)} of {rows} rows"
    return predictions


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p99_ms: float


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_run(wrk: str, url: str, body: Body, seconds: float, connections: int) -> Result:
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency"]
    output = run([*args, "-s", str(body.script), f"{url}/predict"], Path.cwd()).stdout
    where = f"{url}, {body.name}"
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    assert not failed, f"{where}: {failed.group(1)} requests failed:\n{output}"
    errors = re.search(r"Socket errors:.*", output)
    if errors:
        log(f"{where}: {errors.group(0)}")
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    assert rate and p99, f"{where}: cannot read wrk's output:\n{output}"
    return Result(float(rate.group(1)), float(p99.group(1)) * UNITS_MS[p99.group(2)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="d021dc7", help="git ref of the template before")
    parser.add_argument("--seconds", type=float, default=10, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds per server and body")
    parser.add_argument("--connections", type=int, default=8, help="wrk's open connections")
    parser.add_argument("--batch", type=int, default=100, help="rows in the batch body")
    parser.add_argument("--log-level", default="WARNING", help="the services' SERVING_LOG_LEVEL")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    args = parser.parse_args()

    wrk = ensure_wrk()
    before_ref = run(["git", "rev-parse", "--short", args.before], ROOT).stdout.strip()
    with ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=False)
            scratch = args.workdir.resolve()
        else:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        template = snapshot_ref(args.before, scratch / "before" / "template")
        before = build(f"before ({before_ref})", scratch / "before", template)
        template = snapshot_template(scratch / "after" / "template")
        after = build("after (working tree)", scratch / "after", template)

        row = after.example()
        old_row = before.example()
        assert set(row) == set(old_row), f"the features differ: {set(row) ^ set(old_row)}"
        for name, value in row.items():
            if not (isinstance(value, float) and math.isclose(value, old_row[name])):
                assert value == old_row[name], f"the examples differ on {name}"
        bodies = [
            Body("one row", row, lua_script(scratch / "one.lua", row)),
            Body(
                f"{args.batch} rows",
                [row] * args.batch,
                lua_script(scratch / "batch.lua", [row] * args.batch),
            ),
        ]

        servers = {
            side.name: stack.enter_context(
                serving(
                    side.project,
                    side.project.path.parent / "server.log",
                    SERVING_LOG_LEVEL=args.log_level,
                )
            )
            for side in (before, after)
        }
        sides = [before, after]
        labels = {s.name: check(s, servers[s.name], bodies[0])[0]["label"] for s in sides}
        assert len(set(labels.values())) == 1, f"the services disagree on the row: {labels}"
        for side in sides:
            check(side, servers[side.name], bodies[1])
        log(f"both services label the example row {labels[before.name]!r}")

        results: dict[tuple[str, str], list[Result]] = {}
        if args.warmup > 0:
            log("warm-up")
            for body in bodies:
                for side in sides:
                    wrk_run(wrk, servers[side.name].url, body, args.warmup, args.connections)
        for number in range(args.rounds):
            # Alternate, and swap who goes first each round: drift hits both sides alike.
            order = sides if number % 2 == 0 else sides[::-1]
            for body in bodies:
                for side in order:
                    log(f"round {number + 1}/{args.rounds}: {side.name}, {body.name}")
                    url = servers[side.name].url
                    result = wrk_run(wrk, url, body, args.seconds, args.connections)
                    results.setdefault((side.name, body.name), []).append(result)

    def median_rate(side: Side, body: Body) -> float:
        return statistics.median(r.requests_per_second for r in results[side.name, body.name])

    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; level {LEVEL}, default dataset;"
        f" wrk -t1 -c{args.connections} -d{args.seconds:g}s, {args.rounds} rounds,"
        f" SERVING_LOG_LEVEL={args.log_level}\n"
    )
    print(f"| service | body | req/s (median of {args.rounds}) | p99 ms (median) |")
    print("|---|---|---:|---:|")
    for body in bodies:
        for side in (before, after):
            runs = results[side.name, body.name]
            p99 = statistics.median(r.p99_ms for r in runs)
            print(f"| {side.name} | {body.name} | {median_rate(side, body):.1f} | {p99:.1f} |")
    print(f"\n| body | after / before req/s | within {BUDGET:.0%} |\n|---|---:|---|")
    for body in bodies:
        ratio = median_rate(after, body) / median_rate(before, body)
        print(f"| {body.name} | {ratio:.3f} | {'yes' if ratio >= 1 - BUDGET else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Serving throughput at level 3: the generated service (ONNX Runtime on the registry's
champion, with its hooks) against `mlflow models serve` on the same registered model, one
worker each, loaded by the same `wrk`, alternating, round after round.

    .venv/bin/python scripts/benchmark_serving.py [--seconds 10] [--rounds 3] [--warmup 3]

It renders this working tree (committed or not) at level 3 on the default dataset,
installs it into the tests' shared environment (.cache/project-env), trains the default
random forest (version 1, the champion) and a logistic regression (params.yaml
``train.model: linear``), and registers a copy of each as a challenger for the A/B case.
Then it serves, each as its own process on a free port:

- the service as deployed (the Kubernetes config map's settings: Prometheus metrics, the
  prediction log, A/B with ``SERVING_AB_SHARE=0.1`` and a challenger present, JSON request
  logs at INFO);
- the service with its hooks off (``SERVING_METRICS=false SERVING_PREDICTION_LOG=
  SERVING_AB_SHARE=0``);
- the service forced to scikit-learn (``SERVING_RUNTIME=sklearn``, hooks on);
- the random forest's service, hooks on, without its guard (``serving/guard.py``: the body
  caps, the deadline, the content type, the keys), which this script takes out of the app
  in that process: what the guard costs, side by side;
- `mlflow models serve --env-manager local -w 1`, from its own environment with the full
  mlflow package and the model's requirements (.cache/mlflow-serve-env);
- a bare FastAPI route that answers a constant, under the same uvicorn, with FastAPI's
  OpenTelemetry instrumentation off as in the service (the web stack's limit).

`wrk` (``-t1 -c8``, ``--latency``) posts the contract's example row (``make example``) and
a batch of 100 of it, to each server in turn. Prints the machine, a Markdown table, the
targets' checks, and (unless ``--no-profile``) an in-process profile of one-row requests:
CPU time per request of each variant and where it goes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from mlops_harness import plots
from mlops_harness.environments import shared_project_env
from mlops_harness.paths import CACHE, ROOT, tool
from mlops_harness.processes import free_port, run, spawn, stop_group
from mlops_harness.projects import Project, open_project
from mlops_harness.rendering import render_project, snapshot_template

LEVEL = 3
MODELS = {"rf": "random forest (200 trees)", "lr": "logistic regression"}
MLFLOW_ENV = CACHE / "mlflow-serve-env"

# The targets (from the issue): the service, hooks on, against mlflow models serve.
SPEEDUP = {("rf", "one row"): 20.0, ("rf", "100 rows"): 10.0, ("lr", "one row"): 2.0}
SPEEDUP[("lr", "100 rows")] = 2.0
P99_SHARE = 0.25  # the service's p99 at most this share of mlflow serve's
HOOKS_BUDGET = 0.10  # the hooks may cost at most this share of the throughput
BARE_SHARE = 0.5  # one-row throughput at least this share of the bare route's
GUARD_BUDGET = 0.03  # the guard may cost at most this share of the throughput (hooks on)


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


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


# The project: render, install, train two models, register challengers ---------------------


REGISTRY_SNIPPET = """
import json, sys
import mlflow.pyfunc
from {package}.mlops import config, tracking

name, client = config.MODEL_NAME, tracking.client()
out = {{"name": name, "uri": tracking.tracking_uri(), "models": {{}}}}
for key, version in json.loads(sys.argv[1]).items():
    found = client.get_model_version(name, version)
    copy = client.create_model_version(name, found.source, run_id=found.run_id, tags=found.tags)
    alias = f"bench-{{key}}-challenger"
    client.set_registered_model_alias(name, alias, copy.version)
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{{name}}/{{version}}")
    out["models"][key] = {{
        "version": str(version),
        "challenger_version": str(copy.version),
        "challenger_alias": alias,
        "runtime": found.tags.get("serving_runtime", ""),
        "onnx": found.tags.get("onnx", ""),
        "requirements": open(requirements).read(),
    }}
print(json.dumps(out))
"""


@dataclass
class Setup:
    project: Project
    row: dict[str, Any]  # the contract's example, as `make example` prints it
    registry: dict[str, Any]  # the snippet's answer: versions, aliases, requirements


def registered_version(project: Project) -> str:
    return str(json.loads((project.path / "reports/registered.json").read_text())["version"])


def build(folder: Path) -> Setup:
    """Render level 3 on the defaults, install it into the shared environment, train the
    forest, then the logistic regression, and register a challenger copy of each."""
    started = time.monotonic()
    template = snapshot_template(folder / "template")
    log(f"render level {LEVEL} into {folder / 'project'}")
    destination = render_project(template, folder / "project", maturity_level=LEVEL)
    project = open_project(destination, shared_project_env())
    log("make install; make train (random forest)")
    project.make("install")
    project.make("train")
    versions = {"rf": registered_version(project)}
    params = project.path / "params.yaml"
    text, count = re.subn(r"(?m)^(\s+model:\s*)random_forest\b", r"\1linear", params.read_text())
    assert count == 1, "params.yaml has no train.model: random_forest"
    params.write_text(text)
    assert yaml.safe_load(text)["train"]["model"] == "linear"
    log("make train (train.model=linear)")
    project.make("train")
    versions["lr"] = registered_version(project)
    assert versions["lr"] != versions["rf"], "the logistic regression was not registered"
    code = REGISTRY_SNIPPET.format(package=project.package)
    answer = project.python("-c", code, json.dumps(versions)).stdout
    registry = json.loads(answer.strip().splitlines()[-1])
    for key, model in registry["models"].items():
        log(
            f"{key}: version {model['version']} ({model['onnx']}), challenger copy "
            f"version {model['challenger_version']} as {model['challenger_alias']!r}"
        )
    example = project.make("-s", "example").stdout.strip().splitlines()[-1]
    log(f"project ready in {time.monotonic() - started:.0f} s")
    return Setup(project, json.loads(example), registry)


def mlflow_env(setup: Setup) -> Path:
    """The full mlflow (the version the project pins its mlflow-skinny to) and the models'
    requirements, in an environment of their own under .cache/ (kept between runs)."""
    pins = (setup.project.path / "pyproject.toml").read_text()
    found = re.search(r'"mlflow-skinny==([^"]+)"', pins)
    assert found, "the project does not pin mlflow-skinny"
    python = MLFLOW_ENV / "bin" / "python"
    if not python.exists():
        log(f"creating {MLFLOW_ENV}")
        run([tool("uv"), "venv", "--quiet", "--python", tool("python"), str(MLFLOW_ENV)], CACHE)
    requirements = MLFLOW_ENV / "model-requirements.txt"
    lines = {f"mlflow=={found.group(1)}"}
    for model in setup.registry["models"].values():
        lines.update(line.strip() for line in model["requirements"].splitlines() if line.strip())
    requirements.write_text("\n".join(sorted(lines)) + "\n")
    log(f"mlflow serve's environment: uv pip install -r {requirements.name}")
    env = {**os.environ, "UV_COMPILE_BYTECODE": "1"}
    install = [tool("uv"), "pip", "install", "--quiet", "--python", str(python)]
    run([*install, "-r", str(requirements)], CACHE, env)
    return MLFLOW_ENV


# The servers --------------------------------------------------------------------------------


# The service as its __main__ runs it, with the guard taken out of the app's middleware.
UNGUARDED = """
import runpy

from {package}.serving import app
from {package}.serving.guard import Guard

made = app.create_app


def create_app(*args, **kwargs):
    service = made(*args, **kwargs)
    service.user_middleware[:] = [m for m in service.user_middleware if m.cls is not Guard]
    return service


app.create_app = create_app
runpy.run_module("{package}.serving", run_name="__main__")
"""


BARE_APP = """
import sys

import uvicorn
from fastapi import FastAPI, Response

ANSWER = (
    b'{"predictions":[{"label":"benign","probabilities":{"benign":0.9,"malignant":0.1}}],'
    b'"model_version":"constant","variant":"champion"}'
)
# FastAPI's OpenTelemetry instrumentation off, as the service has it (SERVING_OPENTELEMETRY).
OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
app = FastAPI(telemetry=OFF)


@app.post("/predict")
async def predict() -> Response:
    return Response(ANSWER, media_type="application/json")


@app.get("/ready")
async def ready() -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")


# As the service's __main__ runs it (uvicorn picks uvloop and httptools alike).
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


@dataclass
class Server:
    key: str  # unique, short
    label: str  # as the table shows it
    model: str | None  # "rf", "lr", or None (the bare route)
    kind: str  # service, mlflow, bare
    args: list[str]
    env: dict[str, str]
    cwd: Path
    ready: str = "/ready"
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    output: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return "/invocations" if self.kind == "mlflow" else "/predict"


def wait_ready(server: Server, timeout: float = 240) -> None:
    """Until the server answers its readiness URL with 200 (a model is loaded)."""
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.output.read_text()[-3000:] if server.output else ""
            raise AssertionError(f"{server.label} exited with {server.process.returncode}:\n{tail}")
        try:
            if httpx.get(server.url + server.ready, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{server.label}: {server.url}{server.ready} not ready in {timeout} s")


@contextmanager
def serving(server: Server, logs: Path) -> Iterator[Server]:
    """Start the server on a free port in its own process group; stop that group."""
    port = free_port()
    server.url = f"http://127.0.0.1:{port}"
    server.args = [arg.replace("{port}", str(port)) for arg in server.args]
    server.env = {name: value.replace("{port}", str(port)) for name, value in server.env.items()}
    server.output = logs / f"{server.key}.out"
    server.process = spawn(server.args, server.output, server.env, cwd=server.cwd)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_group(server.process, timeout=30)


def servers(setup: Setup, scratch: Path, mlflow: Path) -> list[Server]:
    project, registry = setup.project, setup.registry
    python = str(project.tools.python)
    (scratch / "bare.py").write_text(BARE_APP)
    (scratch / "unguarded.py").write_text(UNGUARDED.format(package=project.package))
    logs = scratch / "prediction-logs"
    found: list[Server] = []
    for key, model in registry["models"].items():
        # The deployment's settings (deploy/kubernetes/base/configmap.yaml), on this version.
        deployed = {
            "SERVING_MODEL_VERSION": model["version"],
            "SERVING_CHALLENGER_ALIAS": model["challenger_alias"],
            "SERVING_AB_SHARE": "0.1",
            "SERVING_METRICS": "true",
            "SERVING_LOG_LEVEL": "INFO",
            "SERVING_PORT": "{port}",
        }
        off = {"SERVING_METRICS": "false", "SERVING_PREDICTION_LOG": "", "SERVING_AB_SHARE": "0"}
        service = [python, "-m", f"{project.package}.serving"]
        variants = [
            ("on", "service, hooks on", service, {}),
            ("off", "service, hooks off", service, off),
            ("sklearn", "service, scikit-learn, hooks on", service, {"SERVING_RUNTIME": "sklearn"}),
        ]
        if key == "rf":
            unguarded = [python, str(scratch / "unguarded.py")]
            variants.append(("unguarded", "service, hooks on, no guard", unguarded, {}))
        for name, label, args, extra in variants:
            settings = {
                **deployed,
                "SERVING_PREDICTION_LOG": str(logs / f"{key}-{name}.jsonl"),
                **extra,
                "BENCH_PACKAGE": project.package,
            }
            env = project.tools.env_for(project.path, **settings)
            found.append(Server(f"{key}-{name}", label, key, "service", args, env, project.path))
        mlflow_args = [
            str(mlflow / "bin" / "mlflow"),
            "models",
            "serve",
            "--model-uri",
            f"models:/{registry['name']}/{model['version']}",
            "--env-manager",
            "local",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]
        mlflow_vars = {
            "PATH": os.pathsep.join([str(mlflow / "bin"), os.environ.get("PATH", "")]),
            "MLFLOW_TRACKING_URI": registry["uri"],
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        environ.update(mlflow_vars)
        found.append(
            Server(
                f"{key}-mlflow",
                "mlflow models serve",
                key,
                "mlflow",
                mlflow_args,
                environ,
                scratch,
                ready="/health",
            )
        )
    bare_env = project.tools.env_for(project.path)
    found.append(
        Server(
            "bare",
            "bare FastAPI route (a constant)",
            None,
            "bare",
            [python, str(scratch / "bare.py"), "{port}"],
            bare_env,
            scratch,
        )
    )
    return found


# Bodies, checks and wrk -----------------------------------------------------------------------


def bodies_for(batch: int) -> tuple[str, str]:
    return ("one row", f"{batch} rows")


def payload(server: Server, rows: list[dict[str, Any]], body: str) -> Any:
    if server.kind == "mlflow":
        return {"dataframe_records": rows}
    return rows[0] if body == "one row" else rows


def lua_script(path: Path, data: Any) -> Path:
    text = json.dumps(data, separators=(",", ":"))
    assert "]==]" not in text, "the body would close the Lua long bracket"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{text}]==]\n"
    )
    return path


def check(server: Server, data: Any, rows: int) -> str:
    """The server answers ``data`` with one prediction per row (the bare route: with its
    constant); the first row's label."""
    answer = httpx.post(server.url + server.path, json=data, timeout=120)
    assert answer.status_code == 200, f"{server.label}: {answer.status_code} {answer.text[:500]}"
    predictions = answer.json()["predictions"]
    if server.kind != "bare":
        assert len(predictions) == rows, f"{server.label}: {len(predictions)} for {rows} rows"
    first = predictions[0]
    return str(first["label"] if isinstance(first, dict) else first)


def describe(server: Server) -> None:
    """What a service serves (/version): runtime and challenger, kept in ``notes``."""
    if server.kind != "service":
        return
    info = httpx.get(server.url + "/version", timeout=10).json()
    server.notes = {"runtime": info["runtime"], "challenger": info["challenger"]}


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p99_ms: float


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_run(wrk: str, server: Server, script: Path, seconds: float, connections: int) -> Result:
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency"]
    output = run([*args, "-s", str(script), server.url + server.path], Path.cwd()).stdout
    where = f"{server.key}, {script.stem}"
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    assert not failed, f"{where}: {failed.group(1)} requests failed:\n{output}"
    errors = re.search(r"Socket errors:.*", output)
    if errors:
        log(f"{where}: {errors.group(0)}")
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    assert rate and p99, f"{where}: cannot read wrk's output:\n{output}"
    return Result(float(rate.group(1)), float(p99.group(1)) * UNITS_MS[p99.group(2)])


def wrk_options(
    parser: argparse.ArgumentParser, seconds: float, rounds: int, warmup: float
) -> None:
    """The options of a measurement (this script's and benchmark_families.py's)."""
    parser.add_argument("--seconds", type=float, default=seconds, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds")
    parser.add_argument("--warmup", type=float, default=warmup, help="seconds per server and body")
    parser.add_argument("--connections", type=int, default=8, help="wrk's open connections")
    parser.add_argument("--batch", type=int, default=100, help="rows in the batch body")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")


def scratch_folder(args: argparse.Namespace, keep: ExitStack) -> Path:
    """``--workdir`` (new, kept afterwards), else a temporary folder ``keep`` removes."""
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        return Path(args.workdir.resolve())
    return Path(keep.enter_context(tempfile.TemporaryDirectory()))


def measure(
    wrk: str,
    servers: list[Server],
    scripts: dict[tuple[str, str], Path],
    bodies: tuple[str, ...],
    args: argparse.Namespace,
) -> tuple[dict[tuple[str, str], list[Result]], list[str]]:
    """A warm-up, then ``args.rounds`` rounds of every server on every body: each cell's
    results, by (server key, body), and the load average after each round."""
    results: dict[tuple[str, str], list[Result]] = {}
    loads = []
    if args.warmup > 0:
        log("warm-up")
        for body in bodies:
            for server in servers:
                script = scripts[(server.kind, body)]
                wrk_run(wrk, server, script, args.warmup, args.connections)
    for number in range(args.rounds):
        # Alternate, and shift who goes first each round: drift hits every server alike.
        shift = number * len(servers) // max(args.rounds, 1)
        order = servers[shift:] + servers[:shift]
        for body in bodies:
            for server in order:
                log(f"round {number + 1}/{args.rounds}: {server.key}, {body}")
                script = scripts[(server.kind, body)]
                result = wrk_run(wrk, server, script, args.seconds, args.connections)
                results.setdefault((server.key, body), []).append(result)
        loads.append(load_average())
    return results, loads


# The in-process profile -------------------------------------------------------------------


HARNESS = '''
"""CPU time per one-row POST /predict, in process: the ASGI app called directly (no HTTP,
no uvicorn), so that only the app's own work is counted; time.process_time counts every
thread (the prediction log's too). Prints JSON."""

import asyncio
import cProfile
import importlib
import json
import os
import pstats
import sys
import time
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Response

PACKAGE = os.environ["BENCH_PACKAGE"]
BODY = sys.argv[1].encode()
REQUESTS = int(sys.argv[2])
HOOKS_ON = json.loads(os.environ["BENCH_HOOKS_ON"])
OFF = {"SERVING_METRICS": "false", "SERVING_PREDICTION_LOG": "", "SERVING_AB_SHARE": "0"}
QUIET = {"SERVING_LOG_LEVEL": "WARNING"}
TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


async def call(app):
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/predict", "raw_path": b"/predict", "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode())],
    }
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)

    status = []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    assert status == [200], status


async def cpu_us(apps, repeats=5):
    """Each app's best of ``repeats`` batches of REQUESTS, the apps taking turns."""
    best = dict.fromkeys(apps, float("inf"))
    for number in range(repeats + 1):
        for name, app in apps.items():
            start = time.process_time()
            for _ in range(REQUESTS if number else 200):  # the first turn warms up
                await call(app)
            if number:
                best[name] = min(best[name], (time.process_time() - start) / REQUESTS)
    return {name: seconds * 1e6 for name, seconds in best.items()}


def category(filename, function):
    if "onnxruntime" in filename or "onnxruntime" in function:
        return "onnxruntime (session.run and its wrapper)"
    if f"/{PACKAGE}/" in filename:
        return "the service's own code: " + os.path.basename(filename)
    if "pydantic" in filename or "pydantic_core" in function or "validate_" in function:
        return "pydantic (request validation)"
    for library in ("fastapi", "starlette", "anyio", "numpy", "prometheus_client", "uuid"):
        if f"/{library}/" in filename or f"{library}." in function or filename.endswith(
            f"/{library}.py"
        ):
            return library
    if "/logging/" in filename:
        return "logging"
    if "/json/" in filename:
        return "json (stdlib, the body)"
    if "/asyncio/" in filename or "select" in function or "_contextvars" in function:
        return "asyncio (event loop)"
    if "recv" in function or "socket" in function:
        return "asyncio (event loop)"
    if "_json" in function:
        return "json (stdlib, the body)"
    if "write" in function or "flush" in function:
        return "file and stdout writes (the logs; with waits for the GIL)"
    if "SimpleQueue" in function or "_thread" in function or "threading" in filename:
        return "queues and threads (with waits for the GIL)"
    if "numpy" in function:
        return "numpy"
    if filename.startswith("<") and "string" in filename or filename == __file__:
        return "this harness"
    return "other (builtins)"


async def profiled(app):
    """cProfile's own time per function, summed by library, as shares of the total."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(REQUESTS):
        await call(app)
    profile.disable()
    groups = {}
    for (filename, _, function), (_, _, own, _, _) in pstats.Stats(profile).stats.items():
        name = category(filename, function)
        groups[name] = groups.get(name, 0.0) + own
    total = sum(groups.values())
    return {name: seconds / total for name, seconds in groups.items()}


@asynccontextmanager
async def service(env, guard=True):
    """The service's app as create_app makes it with ``env``'s settings (without its guard
    if not ``guard``), its lifespan on."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        app = importlib.import_module(f"{PACKAGE}.serving.app")
        settings = importlib.import_module(f"{PACKAGE}.serving.settings").Settings()
        made = app.create_app(settings)
        if not guard:
            kept = [m for m in made.user_middleware if m.cls.__name__ != "Guard"]
            made.user_middleware[:] = kept
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    async with made.router.lifespan_context(made):
        while made.state.variants is None:
            await asyncio.sleep(0.05)
        yield made


def bare():
    made = FastAPI(telemetry=TELEMETRY_OFF)

    @made.post("/predict")
    async def predict() -> Response:
        return Response(b"{}", media_type="application/json")

    return made


async def main():
    variants = {
        "service, hooks on": HOOKS_ON,
        "hooks on, but no request log (SERVING_LOG_LEVEL=WARNING)": {**HOOKS_ON, **QUIET},
        "hooks on, but no prediction log": {**HOOKS_ON, "SERVING_PREDICTION_LOG": ""},
        "hooks on, but no metrics": {**HOOKS_ON, "SERVING_METRICS": "false"},
        "hooks on, but no A/B": {**HOOKS_ON, "SERVING_AB_SHARE": "0"},
        "service, hooks off": {**HOOKS_ON, **OFF},
        "hooks off, and no request log": {**HOOKS_ON, **OFF, **QUIET},
        "hooks on, and FastAPI's OpenTelemetry on": {**HOOKS_ON, "SERVING_OPENTELEMETRY": "true"},
    }
    shares = {}
    async with AsyncExitStack() as stack:
        apps = {"bare FastAPI route (a constant)": bare()}
        for name, env in variants.items():
            apps[name] = await stack.enter_async_context(service(env))
        unguarded = service(HOOKS_ON, guard=False)
        apps["hooks on, but no guard"] = await stack.enter_async_context(unguarded)
        costs = await cpu_us(apps)
        shares["service, hooks on"] = await profiled(apps["service, hooks on"])
    with open(sys.argv[3], "w") as out:
        json.dump({"cpu_us": costs, "shares": shares}, out)


asyncio.run(main())
'''


def profile(setup: Setup, scratch: Path, key: str, requests: int) -> dict[str, Any]:
    """The harness in the project's environment, on ``key``'s model, hooks as deployed."""
    project, model = setup.project, setup.registry["models"][key]
    prototype = scratch / "prototype"
    prototype.mkdir(exist_ok=True)
    (prototype / "harness.py").write_text(HARNESS)
    hooks_on = {
        "SERVING_MODEL_VERSION": model["version"],
        "SERVING_CHALLENGER_ALIAS": model["challenger_alias"],
        "SERVING_AB_SHARE": "0.1",
        "SERVING_METRICS": "true",
        "SERVING_LOG_LEVEL": "INFO",
        "SERVING_PREDICTION_LOG": str(scratch / "prediction-logs" / "profile.jsonl"),
    }
    env = project.tools.env_for(
        project.path, BENCH_PACKAGE=project.package, BENCH_HOOKS_ON=json.dumps(hooks_on)
    )
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(prototype)])
    body = json.dumps(setup.row, separators=(",", ":"))
    output = scratch / "profile.json"
    with (scratch / "profile.out").open("wb") as sink:  # a file, as the servers' output
        completed = subprocess.run(
            [str(project.tools.python), str(prototype / "harness.py"), body, str(requests), output],
            cwd=project.path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    assert completed.returncode == 0, (scratch / "profile.out").read_text()[-3000:]
    result: dict[str, Any] = json.loads(output.read_text())
    return result


# Report -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wrk_options(parser, seconds=10, rounds=3, warmup=3)
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process profile")
    parser.add_argument("--profile-requests", type=int, default=2000, help="per measurement")
    parser.add_argument(
        "--plot",
        type=lambda value: Path(value) if value else None,
        default=ROOT / "docs" / "benchmarks" / "serving.svg",
        help="where to draw the throughput plot (an SVG; --plot '' for none)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    bodies = bodies_for(args.batch)

    wrk = ensure_wrk()
    with ExitStack() as keep:
        scratch = scratch_folder(args, keep)
        stack = keep.enter_context(ExitStack())  # the servers: closed before the profile
        setup = build(scratch)
        mlflow = mlflow_env(setup)
        load_before = load_average()
        rows = [setup.row] * args.batch
        all_servers = servers(setup, scratch, mlflow)
        logs = scratch / "server-output"
        logs.mkdir()
        for server in all_servers:
            log(f"starting {server.key}: {server.label}")
            stack.enter_context(serving(server, logs))
            describe(server)
        scripts: dict[tuple[str, str], Path] = {}
        for server in all_servers:
            for body in bodies:
                data = payload(server, rows if body != "one row" else rows[:1], body)
                count = 1 if body == "one row" else args.batch
                label = check(server, data, count)
                if body == "one row":
                    server.notes["label"] = label
                name = f"{'mlflow' if server.kind == 'mlflow' else 'service'}-{body[:3].strip()}"
                if (server.kind, body) not in scripts:
                    scripts[(server.kind, body)] = lua_script(scratch / f"{name}.lua", data)
        for server in all_servers:
            log(f"{server.key}: {server.notes}")
            if server.kind == "service":
                wanted = "scikit-learn" if "sklearn" in server.key else "onnx"
                assert server.notes["runtime"] == wanted, f"{server.key} runs {server.notes}"
                # The guard refuses a body that is not JSON (415); without it, it is parsed.
                plain = {"content-type": "text/plain"}
                body = json.dumps(setup.row)
                refused = httpx.post(server.url + "/predict", content=body, headers=plain)
                assert (refused.status_code == 415) != server.key.endswith("-unguarded")
                if server.key.endswith("-off"):
                    assert server.notes["challenger"] is None
                else:
                    assert server.notes["challenger"], f"{server.key}: no challenger loaded"
        for key in MODELS:
            labels = {s.notes["label"] for s in all_servers if s.model == key}
            assert len(labels) == 1, f"{key}: the servers label the example differently: {labels}"

        results, loads = measure(wrk, all_servers, scripts, bodies, args)
        stack.close()  # the servers stop before the profile
        profiled = None
        if not args.no_profile:
            log("in-process profile (random forest, one row)")
            profiled = profile(setup, scratch, "rf", args.profile_requests)
        report(args, all_servers, results, setup, load_before, loads, profiled)
    print(f"\n(the whole script took {(time.monotonic() - started) / 60:.1f} min)")
    return 0


def draw(
    medians: dict[tuple[str, str, str], float], bodies: tuple[str, ...], machine: str, path: Path
) -> None:
    """Throughput of every server, one panel per body, on a log scale: the picture the docs
    show beside the table."""
    rows = sorted({(label, model) for label, model, _ in medians}, key=lambda r: (r[1], r[0]))

    def kind(label: str, model: str) -> str:
        return "peer" if "mlflow" in label else "floor" if model == "none" else "ours"

    panels = [
        plots.Panel(
            f"{body}: requests per second",
            [
                plots.Bar(f"{model}: {label}", medians[(label, model, body)], kind(label, model))
                for label, model in rows
            ],
            log=True,
        )
        for body in bodies
    ]
    plots.draw(path, f"Serving at level 3 ({machine})", panels)


def report(
    args: argparse.Namespace,
    all_servers: list[Server],
    results: dict[tuple[str, str], list[Result]],
    setup: Setup,
    load_before: str,
    loads: list[str],
    profiled: dict[str, Any] | None,
) -> None:
    def rate(key: str, body: str) -> float:
        return statistics.median(r.requests_per_second for r in results[key, body])

    def p99(key: str, body: str) -> float:
        return statistics.median(r.p99_ms for r in results[key, body])

    models = setup.registry["models"]
    bodies = bodies_for(args.batch)
    print(
        f"Machine: {plots.machine()}; load average before the runs {load_before}, after each round"
        f" {', '.join(loads)}."
    )
    print(
        f"Level {LEVEL}, default dataset; wrk -t1 -c{args.connections} -d{args.seconds:g}s"
        f" --latency, {args.rounds} alternating rounds after a {args.warmup:g} s warm-up;"
        f" median of the rounds. One uvicorn worker each."
    )
    for key, model in models.items():
        print(
            f"- {MODELS[key]}: version {model['version']} ({model['onnx']}); challenger"
            f" version {model['challenger_version']} (a copy)"
        )
    print()
    head = " | ".join(f"{body}: req/s | {body}: p99 ms" for body in bodies)
    print(f"| model | server | {head} |")
    print("|---|---|" + "---:|---:|" * len(bodies))
    for server in all_servers:
        model = MODELS[server.model] if server.model else "none"
        cells = " | ".join(
            f"{rate(server.key, body):,.1f} | {p99(server.key, body):,.1f}" for body in bodies
        )
        print(f"| {model} | {server.label} | {cells} |")
    spreads = {
        cell: (max(r.requests_per_second for r in runs) - min(r.requests_per_second for r in runs))
        / statistics.median(r.requests_per_second for r in runs)
        for cell, runs in results.items()
    }
    worst = max(spreads, key=lambda cell: spreads[cell])
    print(
        f"\nRound-to-round range of req/s (max - min over the median): median"
        f" {statistics.median(spreads.values()):.0%}, largest {spreads[worst]:.0%}"
        f" ({worst[0]}, {worst[1]})."
    )

    print("\n| target | measured | pass |\n|---|---:|---|")
    checks = []

    def target(name: str, measured: float, passed: bool, unit: str = "x") -> None:
        checks.append(passed)
        print(f"| {name} | {measured:.2f}{unit} | {'yes' if passed else 'NO'} |")

    for key in models:
        for body in bodies:
            batch = "100 rows" if body != "one row" else body
            need = SPEEDUP[(key, batch)]
            ratio = rate(f"{key}-on", body) / rate(f"{key}-mlflow", body)
            target(
                f"{key.upper()} {body}: service / mlflow serve req/s >= {need:g}",
                ratio,
                ratio >= need,
            )
    for key in models:
        for body in bodies:
            share = p99(f"{key}-on", body) / p99(f"{key}-mlflow", body)
            target(
                f"{key.upper()} {body}: p99 / mlflow serve's <= {P99_SHARE:g}",
                share,
                share <= P99_SHARE,
            )
    for key in models:
        for body in bodies:
            off = f"{key}-off"
            cost = 1 - rate(f"{key}-on", body) / rate(off, body)
            target(
                f"{key.upper()} {body}: the hooks' cost <= {HOOKS_BUDGET:.0%}",
                100 * cost,
                cost <= HOOKS_BUDGET,
                "%",
            )
    for body in bodies:
        cost = 1 - rate("rf-on", body) / rate("rf-unguarded", body)
        name = f"RF {body}: the guard's cost <= {GUARD_BUDGET:.0%}"
        target(name, 100 * cost, cost <= GUARD_BUDGET, "%")
    for key in models:
        share = rate(f"{key}-on", "one row") / rate("bare", "one row")
        target(
            f"{key.upper()} one row: req/s / the bare route's >= {BARE_SHARE:g}",
            share,
            share >= BARE_SHARE,
        )
    if args.plot:
        medians = {
            (server.label, MODELS[server.model] if server.model else "none", body): (
                rate(server.key, body)
            )
            for server in all_servers
            for body in bodies
        }
        draw(medians, bodies, f"{plots.machine()}; wrk -c{args.connections}, medians", args.plot)
        print(f"\nPlot: {args.plot}")
    print("\nWhat ONNX buys (service, hooks on, ONNX Runtime / scikit-learn req/s):")
    for key in models:
        for body in bodies:
            gain = rate(f"{key}-on", body) / rate(f"{key}-sklearn", body)
            print(f"- {MODELS[key]}, {body}: {gain:.1f}x")

    if profiled:
        costs = profiled["cpu_us"]
        bare = costs["bare FastAPI route (a constant)"]
        print(
            "\nIn-process profile, random forest, one row: CPU time per request of the ASGI"
            " app alone (no HTTP, no uvicorn; every thread counted; best of 5 x"
            f" {args.profile_requests})."
        )
        print("\n| variant | CPU us per request | x bare |\n|---|---:|---:|")
        for name, cost in costs.items():
            print(f"| {name} | {cost:,.0f} | {cost / bare:.1f} |")
        for name, shares in profiled["shares"].items():
            print(f"\nWhere the time goes ({name}; cProfile, own time by library):")
            for group, share in sorted(shares.items(), key=lambda item: -item[1])[:12]:
                print(f"- {share:5.1%} {group}")


if __name__ == "__main__":
    raise SystemExit(main())

"""The main job, end to end: render a project on the defaults at the highest level the
template has built, then run it as its README says: install, data, train, serve, and
ask the running service for a prediction over HTTP (at level 4, also replay the data at
it and run the monitors).

    make demo            (or: .venv/bin/python scripts/demo.py [--keep-serving])

The project lands in build/demo/ (git-ignored); run it again to start over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import yaml

from mlops_harness.ladder import ladder
from mlops_harness.paths import ROOT
from mlops_harness.processes import free_port
from mlops_harness.rendering import render_project
from mlops_harness.servers import wait_for_http


def step(title: str, args: list[str], cwd: Path, env: dict[str, str], quiet: bool = False) -> None:
    """Run one step, its output shown (``quiet``: kept back, and shown only if it fails)."""
    print(f"\n==> {title}: {' '.join(args)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if done.returncode != 0:
        if quiet:
            print(done.stdout, end="")
        raise SystemExit(f"{title} failed (exit {done.returncode})")
    print(f"    ({time.monotonic() - started:.1f} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-serving", action="store_true", help="leave the server up")
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=bool(os.environ.get("VERBOSE")),
        help="show everything: the install's output and the service's request log"
        " (default: $VERBOSE)",
    )
    args = parser.parse_args()
    quiet = not args.verbose

    level = max(level.number for level in ladder().LEVELS if level.built)
    destination = ROOT / "build" / "demo"
    shutil.rmtree(destination, ignore_errors=True)
    print(f"==> copier copy --trust --defaults --data maturity_level={level} {ROOT} {destination}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a working tree with edits is fine for a demo
        render_project(ROOT, destination, ref="HEAD", maturity_level=level)

    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # uv
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("UV_COMPILE_BYTECODE", "1")
    step("install (the project's own .venv)", ["make", "install"], destination, env, quiet)
    step("data", ["make", "data"], destination, env)
    step("train", ["make", "train"], destination, env)
    print("\n    metrics:", (destination / "reports" / "metrics.json").read_text().strip())

    port = free_port()
    server_log = destination / "logs" / "serve.log"
    shown = "" if args.verbose else f"; its log: {server_log}"
    print(f"\n==> serve: make serve (SERVING_PORT={port}{shown})", flush=True)
    server_log.parent.mkdir(parents=True, exist_ok=True)
    with server_log.open("wb") as sink:  # one JSON line per request: kept out of the way
        server = subprocess.Popen(
            ["make", "serve"],
            cwd=destination,
            env={**env, "SERVING_PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=sink if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server)
        # From level 3 the service answers /health at once and /ready once its model loaded.
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/ready", timeout=10).status_code == 503:
            if time.monotonic() > deadline:
                raise SystemExit("the service did not load its model within 120 s")
            time.sleep(0.5)
        version = httpx.get(f"{url}/version", timeout=10)
        if version.status_code == 200:
            print(f"\n==> GET {url}/version\n{json.dumps(version.json(), indent=2)}")
        contract = yaml.safe_load((destination / "data" / "contract.yaml").read_text())
        row = contract["example"]
        print(f"\n==> POST {url}/predict (the example row in data/contract.yaml)")
        response = httpx.post(f"{url}/predict", json=row, timeout=10)
        response.raise_for_status()
        print(json.dumps(response.json(), indent=2))
        if ladder().capabilities_at(level)["has_drift_detection"]:
            step("replay the data at it", ["make", "simulate", f"URL={url}", "ROWS=400"],
                 destination, env)  # fmt: skip
            step("monitor (drift and decay; RETRAIN= only checks)",
                 ["make", "monitor", "RETRAIN="], destination, env)  # fmt: skip
            report = destination / "reports" / "monitor"
            verdict = json.loads((report / "verdict.json").read_text())["verdict"]
            print(f"    verdict: {json.dumps(verdict)}\n    report: {report / 'report.html'}")
        if args.keep_serving:
            print(f"\nServing on {url}/docs; Ctrl-C stops it.")
            server.wait()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=20)
    print(f"\nDone: level {level} project in {destination}; its README says what is next.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

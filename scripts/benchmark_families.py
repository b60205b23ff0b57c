"""Serving throughput of each model family at level 3: the service (hooks on, as deployed)
against `mlflow models serve` on the same registered version, one row and 100 rows.

    .venv/bin/python scripts/benchmark_families.py [--seconds 8] [--rounds 2] [--warmup 2]

It renders this working tree at level 3 on the default dataset with both boosting
libraries (the ``model_libraries`` answer), installs it into the tests' shared environment,
and trains each family in turn (``params.yaml`` ``train.model``): the random forest,
the logistic regression, scikit-learn's gradient boosting, LightGBM and XGBoost, each
registered as its own version. Then, for each, the service and `mlflow models serve` (its
own environment, with the model's logged requirements: the family's library is among
them) as `benchmark_serving.py` starts them, `wrk` taking turns over them round after
round. Prints each version's runtime (ONNX, with its parity, or scikit-learn, and why) and
a Markdown table with the service's speed-up.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import benchmark_serving as bench  # the sibling script: Python runs a script from its folder
import yaml

from mlops_harness.environments import shared_project_env
from mlops_harness.projects import open_project
from mlops_harness.rendering import render_project, snapshot_template

# The families, in the order trained; the first is the project's default.
FAMILIES = {
    "random_forest": "random forest (200 trees)",
    "linear": "logistic regression",
    "hist_gradient_boosting": "scikit-learn gradient boosting (200 rounds)",
    "lightgbm": "LightGBM (200 rounds)",
    "xgboost": "XGBoost (200 rounds)",
}
LIBRARIES = ["lightgbm", "xgboost"]


def build(folder: Path) -> bench.Setup:
    """Render, install, train and register every family (each its own version)."""
    template = snapshot_template(folder / "template")
    bench.log(f"render level {bench.LEVEL} with {LIBRARIES} into {folder / 'project'}")
    destination = render_project(
        template, folder / "project", maturity_level=bench.LEVEL, model_libraries=LIBRARIES
    )
    project = open_project(destination, shared_project_env())
    project.make("install")
    params = project.path / "params.yaml"
    versions: dict[str, str] = {}
    for family in FAMILIES:
        text, count = re.subn(
            r"(?m)^(\s+model:\s*)\w+", rf"\g<1>{family}", params.read_text(), count=1
        )
        assert count == 1, "params.yaml has no train.model"
        params.write_text(text)
        assert yaml.safe_load(text)["train"]["model"] == family
        bench.log(f"make train (train.model={family})")
        project.make("train")
        versions[family] = bench.registered_version(project)
        assert list(versions.values()).count(versions[family]) == 1, f"{family}: not registered"
    code = bench.REGISTRY_SNIPPET.format(package=project.package)
    answer = project.python("-c", code, json.dumps(versions)).stdout
    registry = json.loads(answer.strip().splitlines()[-1])
    example = project.make("-s", "example").stdout.strip().splitlines()[-1]
    return bench.Setup(project, json.loads(example), registry)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.wrk_options(parser, seconds=8, rounds=2, warmup=2)
    args = parser.parse_args()
    started = time.monotonic()
    bodies = bench.bodies_for(args.batch)
    wrk = bench.ensure_wrk()
    bench.MODELS.update(FAMILIES)  # the servers' labels, by family
    with ExitStack() as keep:
        scratch = bench.scratch_folder(args, keep)
        setup = build(scratch)
        mlflow = bench.mlflow_env(setup)
        load_before = bench.load_average()
        wanted = [
            s for s in bench.servers(setup, scratch, mlflow) if s.key.endswith(("-on", "-mlflow"))
        ]
        logs = scratch / "server-output"
        logs.mkdir()
        scripts: dict[tuple[str, str], Path] = {}
        for server in wanted:
            bench.log(f"starting {server.key}: {server.label}")
            keep.enter_context(bench.serving(server, logs))
            bench.describe(server)
            for body in bodies:
                rows = [setup.row] * (1 if body == "one row" else args.batch)
                data = bench.payload(server, rows, body)
                bench.check(server, data, len(rows))
                name = f"{server.kind}-{body[:3].strip()}"
                if (server.kind, body) not in scripts:
                    scripts[(server.kind, body)] = bench.lua_script(scratch / f"{name}.lua", data)
        results, loads = bench.measure(wrk, wanted, scripts, bodies, args)
        keep.close()

        def rate(key: str, body: str) -> float:
            return statistics.median(r.requests_per_second for r in results[(key, body)])

        def p99(key: str, body: str) -> float:
            return statistics.median(r.p99_ms for r in results[(key, body)])

        print(
            f"Level {bench.LEVEL}, default dataset; load average before {load_before}, after"
            f" each round {', '.join(loads)}; wrk -t1 -c{args.connections}"
            f" -d{args.seconds:g}s, {args.rounds} alternating rounds after a {args.warmup:g} s"
            " warm-up, medians. One worker each; the service as deployed (hooks on)."
        )
        runtimes = {s.model: s.notes.get("runtime") for s in wanted if s.kind == "service"}
        for family, model in setup.registry["models"].items():
            served = f"{runtimes[family]} ({model['onnx']})"
            print(f"- {FAMILIES[family]}: version {model['version']}, {served}")
        head = " | ".join(f"{body}: req/s, service | mlflow serve | x" for body in bodies)
        print(f"\n| family | {head} | p99 ms one row, service / mlflow |")
        print("|---|" + "---:|---:|---:|" * len(bodies) + "---:|")
        for family in FAMILIES:
            cells = []
            for body in bodies:
                ours, theirs = rate(f"{family}-on", body), rate(f"{family}-mlflow", body)
                cells.append(f"{ours:,.0f} | {theirs:,.1f} | {ours / theirs:,.0f}x")
            tail = (
                f"{p99(f'{family}-on', 'one row'):.1f} / {p99(f'{family}-mlflow', 'one row'):.0f}"
            )
            print(f"| {FAMILIES[family]} | {' | '.join(cells)} | {tail} |")
    print(f"\n(the whole script took {(time.monotonic() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

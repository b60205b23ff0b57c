"""Time the level-4 monitor on a day of shipped logs: ROWS prediction records (1M by
default) in FILES files (10) of an object store laid out as the service ships them (a
folder store: ``<store>/predictions/date=<day>/<file>``), judged side by side in one run

* by one process, ``make monitor LOG=file://<store>/predictions``, and
* by the map and reduce on Kubeflow Pipelines' local runner, ``make kfp-monitor LOG=...``:
  a step per file, then one that judges their sum.

The two verdicts must be equal (the drift report, the decay, the decision). On a fresh
level-4 render on the penguins, trained, in the tests' shared environment; the records
are the raw data's rows drawn with replacement, each with the champion's prediction.

    .venv/bin/python scripts/benchmark_monitor.py [--rows 1000000] [--files 10]

Prints a Markdown table; docs/benchmarks.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from mlops_harness.environments import shared_project_env
from mlops_harness.projects import Project, trained_project
from mlops_harness.rendering import render_project, snapshot_template

# Run in the project's environment: the raw rows drawn with replacement, predicted by the
# champion's pipeline file, written as the service writes its records.
WRITE = """
import sys, time
from pathlib import Path
import numpy as np, orjson, pandas as pd
from {package}.mlops.contract import load
from {package}.mlops.frames import model_input
from {package}.predict import predict_prepared
from {package}.train import load_model

rows, files, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
contract = load()
raw = pd.read_csv("data/raw/data.csv").dropna().reset_index(drop=True)
model = load_model(Path("models/model.skops"))
labels = predict_prepared(model, model_input(raw, contract), contract)["label"].astype(str)
features = {{name: raw[name].tolist() for name in contract.names}}
draw = np.random.default_rng(7).integers(0, len(raw), rows)
stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
now = time.time()
per_file = -(-rows // files)
for part in range(files):
    chosen = draw[part * per_file : (part + 1) * per_file]
    lines = []
    for offset, index in enumerate(chosen):
        record = {{
            "request_id": f"bench-{{part}}-{{offset}}",
            "time": now,
            "variant": "champion",
            "model_version": "models:/bench/1",
            "features": {{name: [values[index]] for name, values in features.items()}},
            "predictions": [{{"label": labels[index]}}],
        }}
        lines.append(orjson.dumps(record))
    name = f"predictions-{{stamp}}{{part:06d}}Z-bench-1-{{part}}.jsonl"
    (folder / name).write_bytes(b"\\n".join(lines) + b"\\n")
"""


def timed(project: Project, *args: str, **variables: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    project.make(*args, **variables)
    seconds = time.perf_counter() - started
    verdict = json.loads((project.path / "reports" / "monitor" / "verdict.json").read_text())
    return seconds, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-monitor-"))
    try:
        template = snapshot_template(scratch / "template")
        path = render_project(template, scratch / "project", maturity_level=4, dataset="penguins")
        project = trained_project(path, shared_project_env())
        day = time.strftime("%Y-%m-%d", time.gmtime())
        folder = scratch / "store" / "predictions" / f"date={day}"
        folder.mkdir(parents=True)
        (scratch / "store" / "feedback").mkdir()
        script = WRITE.format(package=project.package)
        project.python("-c", script, str(args.rows), str(args.files), str(folder))
        size = sum(file.stat().st_size for file in folder.iterdir())
        log = f"file://{scratch / 'store'}/predictions"
        one, single = timed(project, "monitor", LOG=log, HOURS="24", RETRAIN="")
        mapped, merged = timed(project, "kfp-monitor", LOG=log, HOURS="24")
        equal = all(single[key] == merged[key] for key in ("champion", "drift", "decay", "verdict"))
        rows = single["window"]["rows"]  # type: ignore[index]
        print(f"{rows:,} records in {args.files} files, {size / 1e6:,.0f} MB of JSON lines\n")
        print("| monitor | seconds | records a second |")
        print("|---|---|---|")
        print(f"| one process (`make monitor`) | {one:.1f} | {rows / one:,.0f} |")
        print(f"| map and reduce, KFP local runner (`make kfp-monitor`) | {mapped:.1f} |"
              f" {rows / mapped:,.0f} |")  # fmt: skip
        print(f"\nthe same verdict: {'yes' if equal else 'NO'}")
        return 0 if equal else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Time contract inference on a large CSV next to pyarrow reading the same file, and the
peak memory of each, on a fresh render in the tests' shared environment.

    .venv/bin/python scripts/benchmark_contract.py [--rows 1000000] [--repeat 3] [--plot FILE.svg]

It writes a seeded CSV (24 float columns, 5 text categories with a few blanks, a text
target of 3 classes), then measures, alternating and each in a process of its own:
`pyarrow.csv.read_csv` alone, `pandas.read_csv(engine="pyarrow")` for reference, and the
generated project's `contract.infer` on that file. Prints a Markdown table and draws it
(docs/benchmarks/contract.svg); the goal is bounded memory and no more than about twice
pyarrow's time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mlops_harness import plots
from mlops_harness.paths import ROOT
from mlops_harness.processes import run
from mlops_harness.projects import Project, own_data_project

TARGET = "label"
FLOATS = 24
CATEGORIES = (
    ("colour", ["red", "green", "blue", "amber"]),
    ("region", ["north", "south", "east", "west", "central"]),
    ("channel", ["web", "store", "phone"]),
    ("plan", ["basic", "plus", "pro", "team", "enterprise", "trial"]),
    ("device", ["desktop", "mobile", "tablet"]),
)
CLASSES = ["bronze", "silver", "gold"]
BLANKS = 0.02  # share of missing values in each category column
CHUNK = 100_000  # rows generated and written at a time

# Run in the project's environment, one process per measurement: import everything first,
# note the peak RSS so far (the imports' share), then time the one call and read the peak.
# On Linux the peak is /proc's VmHWM, this process's own: getrusage's ru_maxrss survives
# execve, so a child started from a big parent reports at least the parent's peak.
MEASURE = """
import json, resource, sys, time
what, path, package = sys.argv[1:4]

def peak_rss():
    try:
        status = open("/proc/self/status").read().split("\\n")
    except OSError:  # no /proc: ru_maxrss, in bytes on macOS, KiB elsewhere
        unit = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

import pyarrow, pyarrow.compute, pyarrow.csv, pyarrow.parquet
if what == "pandas":
    import pandas
    call = lambda: pandas.read_csv(path, engine="pyarrow")
elif what == "infer":
    import importlib
    contract = importlib.import_module(f"{package}.mlops.infer_contract")
    call = lambda: contract.infer(path, sys.argv[4])
else:
    call = lambda: pyarrow.csv.read_csv(path)
imports = peak_rss()
started = time.perf_counter()
result = call()
seconds = time.perf_counter() - started
peak = peak_rss()
extra = {}
if what == "infer":
    extra = {"task": result[0].task, "features": len(result[0].features)}
elif what == "pyarrow":
    extra = {"table": result.nbytes}
print(json.dumps({"seconds": seconds, "peak": peak, "imports": imports, **extra}))
"""

MEASURES = {
    "pyarrow": "`pyarrow.csv.read_csv(path)` (the whole table)",
    "pandas": '`pandas.read_csv(path, engine="pyarrow")`',
    "infer": "`infer_contract.infer(path, target)` (one streamed pass)",
}
# Each in the plot: inference is ours; reading the file whole is what it is compared with.
KINDS = {"pyarrow": "floor", "pandas": "peer", "infer": "ours"}
LABELS = {
    "pyarrow": "pyarrow read_csv",
    "pandas": "pandas read_csv",
    "infer": "infer_contract.infer",
}


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of seeded data, written a chunk at a time."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 5_000, FLOATS)
    centres = rng.uniform(-1_000, 10_000, FLOATS)
    fields = [pa.field(f"x{index:02d}", pa.float64()) for index in range(FLOATS)]
    fields += [pa.field(name, pa.string()) for name, _ in CATEGORIES]
    fields.append(pa.field(TARGET, pa.string()))
    schema = pa.schema(fields)
    with pacsv.CSVWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK):
            size = min(CHUNK, rows - start)
            columns: list[pa.Array] = [
                pa.array(rng.normal(centres[i], scales[i], size).round(3)) for i in range(FLOATS)
            ]
            for _, values in CATEGORIES:
                picked = np.asarray(values, dtype=object)[rng.integers(0, len(values), size)]
                columns.append(pa.array(picked, pa.string(), mask=rng.random(size) < BLANKS))
            label = np.asarray(CLASSES, dtype=object)[rng.choice(3, size, p=[0.5, 0.3, 0.2])]
            columns.append(pa.array(label, pa.string()))
            writer.write_batch(pa.record_batch(columns, schema=schema))


def measure(project: Project, what: str, path: Path) -> dict[str, float]:
    """One measurement, in a fresh process of the project's Python."""
    args = [str(project.tools.python), "-c", MEASURE, what, str(path), project.package, TARGET]
    result = run(args, project.path, project.env)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def megabytes(value: float) -> str:
    return f"{value / 1e6:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument(
        "--plot",
        default=str(ROOT / "docs" / "benchmarks" / "contract.svg"),
        help="where to draw the medians (an SVG; --plot '' for none)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "large.csv"
        started = time.perf_counter()
        write_csv(path, args.rows)
        size = path.stat().st_size
        print(
            f"{path.name}: {args.rows:,} rows x {FLOATS + len(CATEGORIES) + 1} columns, "
            f"{megabytes(size)} MB, written in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        project = own_data_project(Path(scratch))
        with path.open("rb") as file:  # in the page cache before the first measurement
            while file.read(1 << 24):
                pass
        runs: dict[str, list[dict[str, float]]] = {what: [] for what in MEASURES}
        for _ in range(args.repeat):
            for what in MEASURES:
                runs[what].append(measure(project, what, path))
        inferred = runs["infer"][-1]

    def row(what: str) -> str:
        seconds = [figures["seconds"] for figures in runs[what]]
        peak = statistics.median(figures["peak"] for figures in runs[what])
        imports = statistics.median(figures["imports"] for figures in runs[what])
        return (
            f"| {MEASURES[what]} | {statistics.median(seconds):.2f} | {min(seconds):.2f} "
            f"| {megabytes(peak)} | {megabytes(imports)} | {megabytes(peak - imports)} |"
        )

    def median(what: str) -> float:
        return statistics.median(figures["seconds"] for figures in runs[what])

    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, pyarrow {pa.__version__}")
    print(
        f"file: {megabytes(size)} MB of CSV; as pyarrow's table, "
        f"{megabytes(runs['pyarrow'][-1]['table'])} MB in memory; {args.repeat} run(s) each\n"
    )
    print(
        "| what | median s | fastest s | peak RSS MB | after imports MB | peak - imports MB |\n"
        "|---|---|---|---|---|---|"
    )
    for what in MEASURES:
        print(row(what))
    print(f"\ninfer / pyarrow read (median): {median('infer') / median('pyarrow'):.2f}x")
    print(f"infer / pandas read (median): {median('infer') / median('pandas'):.2f}x")
    print(f"infer: {inferred['task']}, {inferred['features']:.0f} features")
    if args.plot:

        def over_imports(what: str) -> float:
            return statistics.median(f["peak"] - f["imports"] for f in runs[what]) / 1e6

        seconds = [plots.Bar(LABELS[what], median(what), KINDS[what]) for what in MEASURES]
        memory = [plots.Bar(LABELS[what], over_imports(what), KINDS[what]) for what in MEASURES]
        panels = [
            plots.Panel("seconds (median)", seconds, " s", digits=2),
            plots.Panel("peak memory over the imports", memory, " MB"),
        ]
        title = f"{megabytes(size)} MB of CSV, {args.rows:,} rows ({plots.machine()})"
        print(f"drawn: {plots.draw(Path(args.plot), title, panels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

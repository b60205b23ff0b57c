"""Time the level-2 pipeline: a clean `dvc repro` next to a no-op one, and each stage's
share of the clean run, on a fresh render in the tests' shared environment.

    .venv/bin/python scripts/benchmark_pipeline.py [--repeat 3] [--plot FILE.svg]

Prints a Markdown table and draws it (docs/benchmarks/pipeline.svg); docs/benchmarks.md
records the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlops_harness import plots
from mlops_harness.environments import shared_project_env
from mlops_harness.paths import ROOT
from mlops_harness.projects import Project, installed
from mlops_harness.rendering import render_project, snapshot_template


def timed(project: Project, *targets: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = project.make(*targets)
    return time.perf_counter() - started, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="clean runs to time")
    parser.add_argument(
        "--plot",
        default=str(ROOT / "docs" / "benchmarks" / "pipeline.svg"),
        help="where to draw the medians (an SVG; --plot '' for none)",
    )
    args = parser.parse_args()

    tools = shared_project_env()
    with tempfile.TemporaryDirectory() as scratch:
        template = snapshot_template(Path(scratch) / "template")
        clean: list[float] = []
        noop: list[float] = []
        stages: dict[str, list[float]] = {}
        for attempt in range(args.repeat):
            destination = Path(scratch) / f"run{attempt}" / "project"
            render_project(template, destination, maturity_level=2)
            project = installed(destination, tools)
            seconds, _ = timed(project, "train")
            clean.append(seconds)
            seconds, output = timed(project, "train")
            assert "Running stage" not in output
            noop.append(seconds)
            for stage in ("ingest", "validate", "features", "train", "evaluate", "register"):
                started = time.perf_counter()
                owned = (project.path / "src" / project.package / f"{stage}.py").is_file()
                module = stage if owned else f"mlops.{stage}"  # the user's, or the template's
                project.python("-m", f"{project.package}.{module}")
                stages.setdefault(stage, []).append(time.perf_counter() - started)
            shutil.rmtree(destination.parent)

    def row(name: str, values: list[float]) -> str:
        return (
            f"| {name} | {statistics.median(values):.1f} s | {min(values):.1f} s | {len(values)} |"
        )

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, byte-compiled environment\n")
    print("| what | median | fastest | runs |\n|---|---|---|---|")
    print(row("`dvc repro` from clean (six stages, MLflow store created)", clean))
    print(row("`dvc repro` with nothing changed", noop))
    for stage, values in stages.items():
        print(row(f"stage `{stage}` alone (`python -m <package>.{stage}`)", values))
    print(f"\nclean / no-op: {statistics.median(clean) / statistics.median(noop):.0f}x")
    if args.plot:
        bars = [
            plots.Bar("dvc repro from clean", statistics.median(clean)),
            plots.Bar("dvc repro, nothing changed", statistics.median(noop)),
            *(plots.Bar(f"stage {name} alone", statistics.median(v)) for name, v in stages.items()),
        ]
        title = f"The level-2 pipeline: median of {args.repeat} runs ({plots.machine()})"
        drawn = plots.draw(Path(args.plot), title, [plots.Panel("seconds", bars, " s", digits=1)])
        print(f"drawn: {drawn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

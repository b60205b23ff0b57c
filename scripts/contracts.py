"""Write the data contracts of the bundled datasets, extensions/contracts/<name>.yaml, with
the generated project's own inference: the same `make contract` a user runs on a file.

    .venv/bin/python scripts/contracts.py            rewrite them
    .venv/bin/python scripts/contracts.py --check    exit 1 if any differs (the tests do this)

It renders a project for a user's own data (the one answer that needs no shipped
contract), installs it in the tests' shared environment, and asks its contract module
to infer each bundled dataset from its source.
"""

from __future__ import annotations

import argparse
import difflib
import tempfile
from pathlib import Path

from mlops_harness.ladder import ladder
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import run
from mlops_harness.projects import own_data_project


def infer_all(scratch: Path) -> dict[str, str]:
    """Each bundled dataset's contract, as the generated project infers it."""
    project = own_data_project(scratch)
    extras = [dataset.requirement for dataset in ladder().DATASETS if dataset.requirement]
    if extras:
        uv = [tool("uv"), "pip", "install", "--quiet", "--python", str(project.tools.python)]
        run([*uv, *extras], project.path)
    contracts = {}
    for dataset in ladder().DATASETS:
        output = scratch / f"{dataset.name}.yaml"
        project.python(
            "-m",
            f"{project.package}.mlops.infer_contract",
            "--source",
            dataset.source,
            "--target",
            dataset.target,
            "--output",
            str(output),
        )
        contracts[dataset.name] = output.read_text(encoding="utf-8")
    return contracts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a shipped one differs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        inferred = infer_all(Path(scratch))
    stale = []
    for dataset in ladder().DATASETS:
        shipped = dataset.contract_file
        current = shipped.read_text(encoding="utf-8") if shipped.exists() else ""
        if current == inferred[dataset.name]:
            continue
        stale.append(dataset.name)
        if args.check:
            diff = difflib.unified_diff(
                current.splitlines(), inferred[dataset.name].splitlines(), "shipped", "inferred"
            )
            print("\n".join(diff))
        else:
            shipped.parent.mkdir(exist_ok=True)
            shipped.write_text(inferred[dataset.name], encoding="utf-8")
            print(f"wrote {shipped.relative_to(ROOT)}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}: run scripts/contracts.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A rendered project and its own commands (``Project``, ``open_project``); one installed
(``installed``), one trained (``trained_project``), one for a user's own data; and what
its pipeline holds (its stages, the hashes DVC recorded, its raw snapshot)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlops_harness.environments import ProjectEnv, UserShell, shared_project_env
from mlops_harness.ladder import capabilities
from mlops_harness.processes import Run, git, run
from mlops_harness.rendering import render_project, snapshot_template


@dataclass
class Project:
    """A rendered project and how to run its own commands."""

    path: Path
    level: int
    answers: dict[str, Any]
    tools: ProjectEnv | UserShell
    caps: dict[str, bool] = field(init=False)

    def __post_init__(self) -> None:
        self.caps = capabilities(self.level)

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    @property
    def contract(self) -> dict[str, Any]:
        """The project's data contract, as YAML reads it."""
        text = (self.path / "data" / "contract.yaml").read_text(encoding="utf-8")
        contract: dict[str, Any] = yaml.safe_load(text)
        return contract

    @property
    def target(self) -> str:
        return str(self.contract["target"]["name"])

    @property
    def features(self) -> list[str]:
        return [str(feature["name"]) for feature in self.contract["features"]]

    @property
    def classifies(self) -> bool:
        return bool(self.contract["task"] == "classification")

    @property
    def served_tolerance(self) -> float:
        """How far a served probability (or value, in target std devs) may be from the
        scikit-learn pipeline's: ONNX Runtime (level 3+) computes in float32, within the
        parity tolerance the register stage checked; below it the pipeline itself serves."""
        if not self.caps["has_fast_serving"]:
            return 1e-9
        params = yaml.safe_load((self.path / "params.yaml").read_text(encoding="utf-8"))
        return float(params["register"]["onnx_tolerance"])

    @property
    def env(self) -> dict[str, str]:
        return self.tools.env_for(self.path)

    @property
    def activated_env(self) -> dict[str, str]:
        """As after `source .venv/bin/activate`: for the bare tools (`dvc exp run`), whose
        stages run the `python` that comes first on PATH."""
        return self.tools.env_for(self.path, activated=True)

    def make(self, *targets: str, check: bool = True, **variables: str) -> Run:
        assignments = [f"{name}={value}" for name, value in variables.items()]
        result = run(
            ["make", *targets, *self.tools.make_variables, *assignments],
            self.path,
            self.env,
            check=check,
        )
        if "install" in targets and isinstance(self.tools, ProjectEnv):
            self.tools.compile_new(result.stdout + result.stderr)
        return result

    def python(self, *args: str, check: bool = True) -> Run:
        return run([str(self.tools.python), *args], self.path, self.env, check=check)


def open_project(path: Path, tools: ProjectEnv | UserShell) -> Project:
    """A rendered project, at the level its answers file records."""
    answers = yaml.safe_load((path / ".copier-answers.yml").read_text(encoding="utf-8"))
    level = int(answers["maturity_level"])
    if isinstance(tools, ProjectEnv):  # the shared environment for this level's pins
        tools = shared_project_env(tracked=capabilities(level)["has_tracking"])
    return Project(path, level, answers, tools)


def own_data_project(scratch: Path) -> Project:
    """A level-0 project for a user's own data (the answer that needs no shipped
    contract), rendered from this working tree into ``scratch`` and installed in the
    shared environment: its contract module infers contracts for the scripts."""
    destination = render_project(
        snapshot_template(scratch / "template"),
        scratch / "project",
        maturity_level=0,
        dataset="own",
        data_source="data/external/x.csv",
    )
    project = open_project(destination, shared_project_env())
    project.make("install")
    return project


def installed(path: Path, tools: ProjectEnv | UserShell) -> Project:
    """A rendered project after its own `make install`, with everything committed once."""
    project = open_project(path, tools)
    project.make("install")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    return project


def trained_project(path: Path, tools: ProjectEnv) -> Project:
    """A rendered project installed (see installed) and trained by `make train`, that run
    committed; ``raw_rows`` is its raw snapshot's size then, before any live row."""
    project = installed(path, tools)
    project.make("train")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "First training run")
    project.raw_rows = len(pd.read_csv(path / "data" / "raw" / "data.csv"))  # type: ignore[attr-defined]
    return project


PIPELINE_STAGES = ("ingest", "validate", "features", "train", "evaluate", "register")
# The stages level 3 adds (profile after evaluate, promote after register), by capability.
LEVEL_STAGES = {
    "has_reference_profile": ("evaluate", "profile"),
    "has_promotion": ("register", "promote"),
}


def pipeline_stages(project: Project) -> tuple[str, ...]:
    """The project's ``dvc.yaml`` stages in order, for its level."""
    stages = list(PIPELINE_STAGES)
    for capability, (after, stage) in LEVEL_STAGES.items():
        if project.caps[capability]:
            stages.insert(stages.index(after) + 1, stage)
    return tuple(stages)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_md5(project: Project, path: Path) -> str:
    """The DVC hash recorded for a data file: its .dvc pointer, or dvc.lock's stage."""
    relative = path.relative_to(project.path).as_posix()
    if project.caps["has_pipeline"]:
        lock = yaml.safe_load((project.path / "dvc.lock").read_text())
        outs = [out for stage in lock["stages"].values() for out in stage.get("outs", [])]
        return str(next(out["md5"] for out in outs if out["path"] == relative))
    pointer = yaml.safe_load(path.with_name(path.name + ".dvc").read_text())
    return str(pointer["outs"][0]["md5"])


def raw_data(project: Project) -> Path:
    return project.path / "data" / "raw" / "data.csv"


def one_row(project: Project) -> dict[str, object]:
    """The first row of the project's raw snapshot, its features only, as a request sends it."""
    raw = pd.read_csv(raw_data(project))
    features = raw.loc[:, project.features].head(1)
    row: dict[str, object] = json.loads(features.to_json(orient="records"))[0]
    return row


def assessed(project: Path, *args: str, check: bool = True) -> Any:
    """``python -m <package>.mlops.maturity`` on the project's source, with the suite's Python
    (the check needs only the standard library and PyYAML)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return run(
        [sys.executable, "-m", "tabular_classifier.mlops.maturity", *args],
        project,
        env,
        check=check,
    )

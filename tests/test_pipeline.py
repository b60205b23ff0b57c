"""The slow tier, level 2 and up: the DVC pipeline, the data and model gates, MLflow
tracking and registry, and the training workflow's commands, on a fresh render."""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mlops_harness.environments import ProjectEnv
from mlops_harness.imports import reached_files
from mlops_harness.ladder import selected_levels
from mlops_harness.processes import free_port, git, run, spawn, stop_group
from mlops_harness.projects import (
    Project,
    installed,
    open_project,
    pipeline_stages,
    raw_data,
    recorded_md5,
    sha256,
)
from mlops_harness.rendering import Render
from mlops_harness.screenshots import png_colours, screenshot
from mlops_harness.servers import served_by, serving, wait_for_http
from mlops_harness.stores import TeamServer, server_env, team_server

pytestmark = pytest.mark.slow


# The pipeline renders with both boosting libraries (model_libraries), and an experiment
# switches to one of their families: what only a library's family brings, end to end (its
# dependency, its converter, its requirements in the logged model). Every family, each
# library's too, is trained, saved, loaded, required and converted with parity (or
# refused, with why) by the project's own tests, which run here in every guide's
# `make test`; XGBoost's image imports it (test_image).
BOOSTED = ("lightgbm", "xgboost")
FAMILIES = {"lightgbm": "LGBM"}


def pipeline_levels() -> list[int]:
    """The built levels with a pipeline that ``$LEVELS`` selects; with no ``$LEVELS`` (the
    whole suite in one go), only the highest: its pipeline has every stage of the levels
    below it, and the CI matrix runs each level on its own."""
    levels = [level for level in selected_levels(built_only=True) if level >= 2]
    return levels if os.environ.get("LEVELS", "").strip() else levels[-1:]


def registry(project: Project, *, login: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the MLflow client sees: runs with params, metrics, tags and artifacts, and the
    registered versions with their tags. Read in the project's own environment."""
    script = f"""
import json, sys
from mlflow import MlflowClient
from {project.package}.mlops import config, tracking
client = tracking.client()
runs = client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id])
versions = client.search_model_versions(f"name = '{{config.MODEL_NAME}}'")
print(json.dumps({{
    "uri": tracking.tracking_uri(),
    "runs": [{{"id": r.info.run_id, "params": r.data.params, "metrics": r.data.metrics,
              "tags": r.data.tags,
              "artifacts": [f.path for d in client.list_artifacts(r.info.run_id)
                            for f in (client.list_artifacts(r.info.run_id, d.path)
                                      if d.is_dir else [d])]}}
             for r in runs],
    "versions": [{{"version": str(v.version), "run_id": v.run_id, "tags": v.tags}}
                 for v in versions],
}}))
"""
    env = {**project.env, **(login or {})}  # a team server's address and login
    result = run([str(project.tools.python), "-c", script], project.path, env)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def experiment_metrics(shown: Any, name: str) -> dict[str, float] | None:
    """The metrics `dvc exp show --json` lists for the experiment called ``name``."""
    if isinstance(shown, dict):
        if shown.get("name") == name and isinstance(shown.get("data"), dict):
            metrics: dict[str, float] = shown["data"]["metrics"]["reports/metrics.json"]["data"]
            return metrics
        children = list(shown.values())
    elif isinstance(shown, list):
        children = shown
    else:
        return None
    for child in children:
        found = experiment_metrics(child, name)
        if found is not None:
            return found
    return None


def outputs(project: Project) -> dict[str, str]:
    """Hashes of everything downstream of validation."""
    paths = [
        "data/processed/train.csv",
        "data/processed/test.csv",
        "models/model.skops",
        "reports/metrics.json",
        "reports/registered.json",
    ]
    return {path: sha256(project.path / path) for path in paths}


def restore(project: Project) -> None:
    """Back to the committed pipeline state: params, lock, reports, and the outputs."""
    git(project.path, "checkout", "--", ".")
    project.python("-m", "dvc", "checkout", "--force")


@contextmanager
def params_changed(
    project: Project, old: str, new: str, file: str = "params.yaml"
) -> Iterator[None]:
    """``file`` (params.yaml, or another) with ``old`` replaced by ``new``; the committed
    state afterwards."""
    params = project.path / file
    text = params.read_text()
    assert old in text, old
    params.write_text(text.replace(old, new))
    try:
        yield
    finally:
        restore(project)


@pytest.fixture(scope="module", params=pipeline_levels(), ids=lambda level: f"level-{level}")
def pipeline(request: pytest.FixtureRequest, render: Render, project_env: ProjectEnv) -> Project:
    """A fresh render, installed, whose whole pipeline ran once from clean and was committed."""
    level: int = request.param
    libraries = list(BOOSTED)  # their families, beside scikit-learn's
    made = render(f"pipeline{level}", maturity_level=level, model_libraries=libraries)
    project = installed(made, project_env)
    project.make("train")
    git(project.path, "add", "--all")
    git(project.path, "commit", "--quiet", "--message", "First pipeline run")
    return project


def test_a_clean_repro_runs_every_stage(pipeline: Project) -> None:
    lock = yaml.safe_load((pipeline.path / "dvc.lock").read_text())
    assert list(lock["stages"]) == list(pipeline_stages(pipeline))
    for stage in pipeline_stages(pipeline):
        module = stage_module(pipeline, stage)
        assert lock["stages"][stage]["cmd"] == f"python -m {pipeline.package}.{module}"
    metrics = pipeline.python("-m", "dvc", "metrics", "show", "--json").stdout
    assert "accuracy" in metrics and "roc_auc" in metrics
    plots = pipeline.python("-m", "dvc", "plots", "show", "--json").stdout
    for plot in ("roc.json", "precision_recall.json", "confusion_matrix.csv"):
        assert plot in plots
    pipeline.make("plots")
    drawn = (pipeline.path / "dvc_plots" / "index.html").read_text()
    assert drawn.count("<svg") >= 3 and "<script" not in drawn, "charts drawn, no network"


def test_the_plots_page_looks_right_in_a_browser(pipeline: Project, tmp_path: Path) -> None:
    """`make plots`' page, drawn by headless Chromium (its charts are Vega, drawn by the
    page's own scripts): its title, and not blank."""
    page = pipeline.path / "dvc_plots" / "index.html"
    if not page.is_file():
        pipeline.make("plots")
    title = screenshot(page.as_uri(), tmp_path / "dvc-plots.png")
    assert title == f"{pipeline.answers['project_name']}: the pipeline's plots"
    assert png_colours(tmp_path / "dvc-plots.png") >= 16, "a blank page"


def test_the_confusion_matrix_shows_its_counts(pipeline: Project) -> None:
    """`make plots` draws the counts in the confusion matrix's cells (DVC's template shows
    them only behind a checkbox a picture does not have): one per cell, the test set's
    rows in all."""
    if not pipeline.classifies:
        pytest.skip("a regression has no confusion matrix")
    page = pipeline.path / "dvc_plots" / "index.html"
    if not page.is_file():
        pipeline.make("plots")
    # The cells' text marks, each drawing its own count.
    text = r'<text aria-label="actual: [^;"]+; predicted: [^;"]+; xy_count: (\d+)"[^>]*>(\d+)<'
    cells = re.findall(text, page.read_text())
    labels = len(pipeline.contract["target"]["labels"])
    assert len(cells) == labels * labels and all(count == drawn for count, drawn in cells)
    test_rows = len(pd.read_csv(pipeline.path / "data" / "processed" / "test.csv"))
    assert sum(int(count) for count, _ in cells) == test_rows


def test_a_second_repro_does_nothing(pipeline: Project) -> None:
    before = registry(pipeline)
    result = pipeline.make("train")
    for stage in pipeline_stages(pipeline):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout, result.stdout
    assert "Running stage" not in result.stdout
    assert registry(pipeline)["versions"] == before["versions"]
    assert git(pipeline.path, "status", "--porcelain").stdout == ""


def test_every_run_is_tracked_with_its_lineage_and_registered(pipeline: Project) -> None:
    state = registry(pipeline)
    assert state["uri"] == f"sqlite:///{pipeline.path / 'mlflow.db'}"
    registered = json.loads((pipeline.path / "reports" / "registered.json").read_text())
    run_id = json.loads((pipeline.path / "models" / "run.json").read_text())["run_id"]
    assert registered["run_id"] == run_id
    tracked = next(run for run in state["runs"] if run["id"] == run_id)
    params = yaml.safe_load((pipeline.path / "params.yaml").read_text())
    assert tracked["params"]["train.n_estimators"] == str(params["train"]["n_estimators"])
    assert tracked["params"]["features.test_size"] == str(params["features"]["test_size"])
    metrics = json.loads((pipeline.path / "reports" / "metrics.json").read_text())
    assert {key: tracked["metrics"][key] for key in metrics} == pytest.approx(metrics)
    generated = git(pipeline.path, "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    assert tracked["tags"]["git_commit"] == generated  # trained on the committed render
    raw = raw_data(pipeline)
    assert tracked["tags"]["data_hash"] == recorded_md5(pipeline, raw)
    train_data = pipeline.path / "data" / "processed" / "train.csv"
    assert tracked["tags"]["train_data_hash"] == recorded_md5(pipeline, train_data)
    assert tracked["tags"]["model_gate"] == "passed"
    expected = {
        f"plots/{name}" for name in ("roc.json", "precision_recall.json", "confusion_matrix.csv")
    }
    expected.add("contract/contract.yaml")  # the data contract the model was trained on
    if pipeline.caps["has_reference_profile"]:
        expected.add("profile/profile.json")
    if pipeline.caps["has_model_card"]:
        expected.add("card/model_card.md")
    assert expected <= set(tracked["artifacts"])
    version = next(v for v in state["versions"] if v["version"] == registered["version"])
    assert version["run_id"] == run_id
    for tag in ("run_id", "git_commit", "data_hash", "params_hash"):
        assert version["tags"][tag] == (run_id if tag == "run_id" else tracked["tags"][tag])


def test_the_registered_model_loads_and_predicts_as_the_pipeline_s(
    pipeline: Project, tmp_path: Path
) -> None:
    test_set = pd.read_csv(pipeline.path / "data" / "processed" / "test.csv")
    rows = test_set.drop(columns=pipeline.target)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predicted = pipeline.make(
        "predict", INPUT=str(tmp_path / "rows.csv"), OUTPUT=str(tmp_path / "file.csv")
    )
    # `make predict` predicts with the version the service serves, and says which.
    version = served_by(predicted.stderr)
    assert version is not None, predicted.stderr
    script = (
        "import sys, pandas as pd\n"
        f"from {pipeline.package}.mlops import config, registered\n"
        f"from {pipeline.package}.predict import predict\n"
        f"from {pipeline.package}.mlops.contract import load\n"
        f"from {pipeline.package}.mlops.frames import read_frame\n"
        "model = registered.load_registered(config.MODEL_NAME, sys.argv[1])\n"
        "rows = read_frame(sys.argv[2], load())\n"
        "predict(model, rows, load()).to_csv(sys.argv[3], index=False)\n"
    )
    pipeline.python("-c", script, version, str(tmp_path / "rows.csv"), str(tmp_path / "reg.csv"))
    registered = pd.read_csv(tmp_path / "reg.csv")
    answered = pd.read_csv(tmp_path / "file.csv")  # the rows, with the predictions added
    pd.testing.assert_frame_equal(registered, answered.loc[:, list(registered.columns)])


def test_the_project_s_own_tests_prove_every_family(pipeline: Project) -> None:
    """The project's tests of its families, on this render (both boosting libraries): each
    family, XGBoost's and LightGBM's too, trains reproducibly, saves and loads with its
    trusted types, requires its library, and (from level 3) converts to ONNX with parity;
    a family that brings its own converter must convert."""
    code = (
        f"import json; from {pipeline.package}.train import MODEL_KINDS as k; print(json.dumps(k))"
    )
    kinds = json.loads(pipeline.python("-c", code).stdout)
    assert set(BOOSTED) <= set(kinds), kinds
    files = ["tests/test_train.py"]
    if pipeline.caps["has_fast_serving"]:
        files.append("tests/test_export.py")
    ran = pipeline.python(
        "-m", "pytest", "-v", "-p", "no:cacheprovider", "-k", "kind or requires", *files
    )
    passed = set(re.findall(r"::(test_\w+)\[(\w+)\] PASSED", ran.stdout))
    tests = {name for name, _ in passed}
    assert "test_every_model_kind_saves_and_loads_with_the_trusted_types" in tests, ran.stdout
    assert "test_a_model_requires_the_library_its_family_needs" in tests, ran.stdout
    if pipeline.caps["has_fast_serving"]:
        assert "test_every_model_kind_converts_with_parity_or_says_why_not" in tests
    assert passed == {(name, kind) for name in tests for kind in kinds}, ran.stdout


@pytest.mark.parametrize("family", FAMILIES)
def test_an_experiment_with_another_model_family_changes_the_metrics(
    pipeline: Project, family: str
) -> None:
    """`dvc exp run -S train.model=<family>`, as the guide says to run it: the whole
    pipeline on a boosting library's family, listed by `dvc exp show` with its metrics;
    past the baseline gate and registered (from level 3 served by ONNX, with parity: the
    project registers the library's converter); the registered version loads (skops,
    with the family's trusted types) and predicts as the pipeline's file. The committed
    state afterwards."""
    baseline = json.loads((pipeline.path / "reports" / "metrics.json").read_text())
    experiment = ["exp", "run", "--name", family, "-S", f"train.model={family}"]
    try:
        run(
            [str(pipeline.tools.python), "-m", "dvc", *experiment],
            pipeline.path,
            pipeline.activated_env,
        )
        shown = json.loads(pipeline.python("-m", "dvc", "exp", "show", "--json").stdout)
        listed = experiment_metrics(shown, family)
        changed = json.loads((pipeline.path / "reports" / "metrics.json").read_text())
        assert listed == changed != baseline
        registered = json.loads((pipeline.path / "reports" / "registered.json").read_text())
        version = next(
            v for v in registry(pipeline)["versions"] if v["version"] == registered["version"]
        )
        if pipeline.caps["has_fast_serving"]:
            runtime, onnx = version["tags"]["serving_runtime"], version["tags"]["onnx"]
            assert (runtime, onnx.split(":")[0]) in {
                ("onnx", "parity"),
                ("scikit-learn", "refused"),
            }, version["tags"]
            assert runtime == "onnx", version["tags"]
        test_set = pipeline.path / "data" / "processed" / "test.csv"
        script = (
            "import sys\n"
            f"from {pipeline.package} import train\n"
            f"from {pipeline.package}.mlops import config, registered\n"
            f"from {pipeline.package}.mlops.contract import load\n"
            f"from {pipeline.package}.mlops.frames import model_input, read_frame\n"
            "contract = load()\n"
            "rows = model_input(read_frame(sys.argv[2], contract), contract)\n"
            "served = registered.load_registered(config.MODEL_NAME, sys.argv[1])\n"
            "made = train.load_model(config.MODEL_FILE)\n"
            "print(type(served.steps[-1][1]).__name__)\n"
            "print((served.predict(rows) == made.predict(rows)).all())\n"
        )
        shown = pipeline.python("-c", script, str(registered["version"]), str(test_set))
        estimator, same = shown.stdout.split()[-2:]
        assert estimator.startswith(FAMILIES[family]) and same == "True", shown.stdout
    finally:
        restore(pipeline)
    assert json.loads((pipeline.path / "reports" / "metrics.json").read_text()) == baseline


def module_path(project: Project, dotted: str) -> Path | None:
    """The file of the package's module ``dotted`` (``train``, ``mlops.contract``), if any."""
    path = project.path / "src" / project.package / f"{dotted.replace('.', '/')}.py"
    return path if path.is_file() else None


def stage_module(project: Project, stage: str) -> str:
    """The module a stage runs: the user's (``train``) or the template's (``mlops.register``)."""
    return stage if module_path(project, stage) else f"mlops.{stage}"


def package_imports(project: Project, module: str) -> set[str]:
    """The files of the package's modules that ``module`` imports, transitively, its own
    included, as dvc.yaml lists them."""
    package = project.path / "src" / project.package
    files = reached_files(package, project.package, module)
    return {str(path.relative_to(project.path)) for path in files}


def loads_the_contract(project: Project, module: str) -> bool:
    """Whether the stage's module calls the contract module's ``load()``."""
    tree = ast.parse((module_path(project, module) or Path()).read_text())
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load"
        for node in ast.walk(tree)
    )


def test_every_stage_lists_the_modules_it_imports_and_the_contract_it_reads(
    pipeline: Project,
) -> None:
    stages = yaml.safe_load((pipeline.path / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(pipeline_stages(pipeline))
    for stage, spec in stages.items():
        listed = {dep for dep in spec["deps"] if dep.startswith("src/")}
        module = stage_module(pipeline, stage)
        imported = package_imports(pipeline, module)
        assert listed == imported, stage
        assert ("data/contract.yaml" in spec["deps"]) == loads_the_contract(pipeline, module), stage


def dvc_changed(project: Project) -> set[str]:
    """The stages `dvc status` reports as changed."""
    status = json.loads(project.python("-m", "dvc", "status", "--json").stdout or "{}")
    return {name.split(":")[-1] for name in status}


def test_an_edit_reruns_exactly_the_stages_that_read_it(pipeline: Project) -> None:
    assert dvc_changed(pipeline) == set()
    contract = pipeline.contract
    numeric = next(f for f in contract["features"] if f.get("bounds"))
    low, high = numeric["bounds"]
    readers = {"ingest", "validate", "features", "train", "evaluate"}
    readers |= {"profile"} if pipeline.caps["has_reference_profile"] else set()
    readers |= {"register"} if pipeline.caps["has_fast_serving"] else set()  # parity check
    readers |= {"promote"} if pipeline.caps["has_promotion"] else set()
    text = (pipeline.path / "data" / "contract.yaml").read_text()
    old = f"bounds: [{low}, {high}]"
    assert old in text
    with params_changed(pipeline, old, f"bounds: [{low}, {high * 2}]", file="data/contract.yaml"):
        assert dvc_changed(pipeline) == readers
    with params_changed(pipeline, "n_estimators: 200", "n_estimators: 150"):
        assert dvc_changed(pipeline) == {"train"}
    with params_changed(pipeline, "min_gain: 0.05", "min_gain: 0.04"):
        assert dvc_changed(pipeline) == {"register"}
    assert dvc_changed(pipeline) == set()


def test_corrupt_source_data_stops_the_pipeline_at_validate(
    pipeline: Project, tmp_path: Path
) -> None:
    frame = pd.read_csv(raw_data(pipeline))
    feature = frame.columns[0]
    frame.loc[5, feature] = -3.0
    frame.loc[9, frame.columns[3]] = None
    frame.loc[11, pipeline.target] = "a class never seen"
    source = tmp_path / "corrupt.csv"
    frame.to_csv(source, index=False)
    before, versions = outputs(pipeline), registry(pipeline)["versions"]
    bundled = f"source: {pipeline.contract['source']}"
    with params_changed(pipeline, bundled, f"source: {source}", file="data/contract.yaml"):
        result = pipeline.make("train", check=False)
        assert result.returncode != 0
        assert "Running stage 'validate'" in result.stdout
        assert "Running stage 'features'" not in result.stdout
        errors = result.stdout + result.stderr
        assert f"column '{feature}' fails in_range" in errors
        assert f"column '{frame.columns[3]}' fails not_nullable" in errors
        assert f"column '{pipeline.target}' fails isin" in errors
        assert outputs(pipeline) == before, "a downstream output changed"
        assert registry(pipeline)["versions"] == versions


def test_a_model_under_the_gate_is_not_registered(pipeline: Project) -> None:
    """Both gates: a gain over the trivial baseline out of reach, then an absolute
    threshold added; each refusal names the metric (and both scores), and nothing is
    registered."""
    versions = registry(pipeline)["versions"]
    metrics = json.loads((pipeline.path / "reports" / "metrics.json").read_text())
    metric = "roc_auc" if pipeline.classifies else "r2"
    score, baseline = metrics[metric], metrics[f"baseline_{metric}"]
    with params_changed(pipeline, "min_gain: 0.05", "min_gain: 1.5"):
        result = pipeline.make("train", check=False)
        assert result.returncode != 0
        assert "Running stage 'register'" in result.stdout
        said = f"{metric} = {score:.4f} against the trivial baseline's {baseline:.4f}"
        assert said in result.stderr and "register.min_gain = 1.5" in result.stderr
        assert registry(pipeline)["versions"] == versions
    absolute = "  # min_accuracy: 0.85" if pipeline.classifies else "  # min_r2: 0.3"
    wanted = "  min_accuracy: 1.01" if pipeline.classifies else "  min_r2: 1.01"
    with params_changed(pipeline, absolute, wanted):
        result = pipeline.make("train", check=False)
        assert result.returncode != 0
        assert f"register.{wanted.strip().replace(': ', ' = ')}" in result.stderr
        assert registry(pipeline)["versions"] == versions


def test_the_training_workflow_s_commands_run_green(pipeline: Project) -> None:
    """train.yml runs `make install`, `make train`, `make push`, `make report`."""
    workflow = yaml.safe_load((pipeline.path / ".github" / "workflows" / "train.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["train"]["steps"])
    for target in ("install", "train", "push", "report"):
        assert f"make {target}" in steps or f"make --silent {target}" in steps
    pipeline.make("push")
    remote = pipeline.path.parent / f"{pipeline.answers['project_slug']}-dvc-storage"
    assert len(list(remote.rglob("*"))) >= len(pipeline_stages(pipeline))
    with params_changed(pipeline, "n_estimators: 200", "n_estimators: 50"):
        pipeline.make("train")
        report = pipeline.make("report").stdout
        assert "| Path" in report and "accuracy" in report
        assert "train.n_estimators" in report and "200" in report and "50" in report


# A team tracking server -------------------------------------------------------------------


def test_make_ui_shows_the_pipeline_s_run_and_model(pipeline: Project, tmp_path: Path) -> None:
    """`make ui` serves the MLflow UI on the project's own store (here from the team
    server's environment, full mlflow at the project's pin, named by MLFLOW_UI_ENV: a
    user's first `make ui` installs its own)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    make_ui = ["make", "ui", f"PYTHON={pipeline.tools.python}"]
    full_mlflow = server_env(pipeline.path / "deploy" / "mlflow" / "requirements.txt")
    make_ui += [f"MLFLOW_UI_ENV={full_mlflow}", f"UI_PORT={port}"]
    process = spawn(make_ui, tmp_path / "ui.log", pipeline.env, cwd=pipeline.path)
    try:
        wait_for_http(f"{url}/health", process, timeout=120)
        assert "<title>MLflow</title>" in httpx.get(url, timeout=10).text
        name = pipeline.answers["project_slug"]
        api = f"{url}/api/2.0/mlflow"
        experiment = httpx.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": name}, timeout=10
        ).json()["experiment"]
        runs = httpx.post(
            f"{api}/runs/search", json={"experiment_ids": [experiment["experiment_id"]]}, timeout=10
        ).json()["runs"]
        trained = json.loads((pipeline.path / "models" / "run.json").read_text())["run_id"]
        assert trained in {listed["info"]["run_id"] for listed in runs}
        model = httpx.get(f"{api}/registered-models/get", params={"name": name}, timeout=10)
        assert model.json()["registered_model"]["latest_versions"], model.text
        # The runs table and the registered model, as a person browses them (the titles
        # are set by the pages' scripts once they have drawn).
        number = experiment["experiment_id"]
        pages = {
            "mlflow-ui.png": (f"#/experiments/{number}/runs", f"Runs - Experiment {number}"),
            "mlflow-model.png": (f"#/models/{name}", f"Model: {name}"),
        }
        for picture, (route, expected) in pages.items():
            title = screenshot(f"{url}/{route}", tmp_path / picture, wait_ms=15000)
            assert title == f"{expected} - MLflow", title
            assert png_colours(tmp_path / picture) >= 16, f"{picture}: a blank page"
    finally:
        stop_group(process)


@pytest.fixture(scope="module")
def team(pipeline: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """The project's team server (deploy/mlflow: its pinned packages, its auth.ini, its
    environment variables) on a real PostgreSQL and an S3-compatible object store."""
    deploy = pipeline.path / "deploy" / "mlflow"
    scratch = tmp_path_factory.mktemp("team")
    with team_server(deploy, scratch) as server:
        yield server


@pytest.fixture(scope="module")
def login(team: TeamServer) -> dict[str, str]:
    """The pipeline's own login on the team server (the admin makes it)."""
    return team.add_user("pipeline", "pipeline-password-for-tests")


def test_the_pipeline_tracks_and_registers_on_a_team_server(
    pipeline: Project, team: TeamServer, login: dict[str, str]
) -> None:
    """A bare `dvc repro`, logged in to the team server: the runs and the registry go to
    its PostgreSQL, the artifacts to its object store (through the server: the client has
    no key to the store), and an anonymous request is refused."""
    env = {**pipeline.activated_env, **login}
    try:
        forced = [
            str(pipeline.tools.python),
            "-m",
            "dvc",
            "repro",
            "--force",
            "--downstream",
            "train",
        ]
        run(forced, pipeline.path, env)
        state = registry(pipeline, login=login)
        assert state["uri"] == team.url
        assert len(state["runs"]) == 1 and len(state["versions"]) == 1
        tracked = state["runs"][0]
        assert tracked["metrics"]["accuracy"] > 0.8
        assert {"git_commit", "data_hash", "params_hash"} <= set(tracked["tags"])
        plots = {path for path in tracked["artifacts"] if path.startswith("plots/")}
        assert len(plots) == 3
        if pipeline.caps["has_fast_serving"]:  # and back: register read the test set's ONNX
            version = state["versions"][0]["tags"]
            assert version["serving_runtime"] == "onnx", version
            assert "onnx/model.onnx" in tracked["artifacts"]
        # Where it all is: the run in PostgreSQL, its files in the bucket.
        assert (tracked["id"],) in team.query("SELECT run_uuid FROM runs")
        stored = team.objects("mlflow/")
        assert any(key.endswith("/plots/roc.json") for key in stored), stored
        assert any(key.endswith("/model.onnx") for key in stored), stored
        local = registry(pipeline)
        assert tracked["id"] not in {run["id"] for run in local["runs"]}, "went to the server"
        # Nothing anonymous: neither a read nor a write.
        name = pipeline.answers["project_slug"]
        api = f"{team.url}/api/2.0/mlflow"
        read = httpx.get(f"{api}/registered-models/get", params={"name": name}, timeout=10)
        write = httpx.post(f"{api}/registered-models/create", json={"name": "x"}, timeout=10)
        assert (read.status_code, write.status_code) == (401, 401)
        answer = httpx.get(
            f"{api}/registered-models/get",
            params={"name": name},
            auth=(login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"]),
            timeout=10,
        ).json()
        assert answer["registered_model"]["latest_versions"][0]["run_id"] == tracked["id"]
    finally:
        restore(pipeline)


# The same pipeline on Kubeflow Pipelines ---------------------------------------------------


def strip_ansi(text: str) -> str:
    """KFP's local runner colours its log, terminal or not."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run_of(state: dict[str, Any], version: str) -> dict[str, Any]:
    """The tracked run of a registered version."""
    run_id = next(item["run_id"] for item in state["versions"] if item["version"] == version)
    return next(item for item in state["runs"] if item["id"] == run_id)


def workflow_step(
    project: Project, workflow: str, name: str, env: Mapping[str, str], scratch: Path
) -> tuple[dict[str, str], str]:
    """A `run:` step of one of the project's workflows, run as GitHub's runner runs it
    (`bash -e`, the Python of the job's setup on PATH, files for its outputs and its
    summary): the outputs it set, and what it added to the summary."""
    path = project.path / ".github" / "workflows" / workflow
    jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]
    (script,) = [
        step["run"]
        for job in jobs.values()
        for step in job.get("steps", [])
        if step.get("name") == name
    ]
    output, summary = scratch / "github-output", scratch / "github-step-summary"
    output.write_text("")
    summary.write_text("")
    files = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    run(["bash", "-e", "-c", script], project.path, {**project.activated_env, **env, **files})
    values = dict(line.split("=", 1) for line in output.read_text().splitlines() if line)
    return values, summary.read_text()


def test_the_kfp_pipeline_registers_what_dvc_repro_registers(
    pipeline: Project, team: TeamServer, login: dict[str, str], tmp_path: Path
) -> None:
    """`make kfp-run-local`, logged in to the team server, compiles the pipeline and runs
    the compiled file with KFP's local runner, every step a process that passes artifacts:
    the version it registers there has the metrics, parameters, lineage tags and artifacts
    of the one `dvc repro` registered there (the test before) on the same data, params and
    commit, and it leaves the checkout's data and models alone. (A step whose module fails
    fails its component: the project's test_pipelines.py.)"""
    before = registry(pipeline, login=login)
    assert len(before["versions"]) == 1, "the team server test runs first"
    (dvc_version,) = before["versions"]
    checkout = outputs(pipeline)
    promotion = pipeline.path / "reports" / "promotion.json"
    promoted_by_dvc = promotion.read_bytes() if promotion.exists() else b""
    # The source as a file (a copy of the snapshot, which ingest reads back byte for
    # byte), which the pipeline's importer brings in.
    source = tmp_path / "rows.csv"
    source.write_bytes((pipeline.path / "data" / "raw" / "data.csv").read_bytes())
    try:
        result = pipeline.make("kfp-run-local", KFP_SOURCE=str(source), **login)
        assert "kfp: compiled build/pipeline.yaml" in result.stdout
        compiled = (pipeline.path / "build" / "pipeline.yaml").read_text()
        pipeline_spec = next(yaml.safe_load_all(compiled))
        tasks = set(pipeline_spec["root"]["dag"]["tasks"])
        importers = {"importer", "importer-2"} if pipeline.caps["has_retraining"] else {"importer"}
        assert importers <= tasks and "ingest-file" in tasks
        steps = {task.removesuffix("-file") for task in tasks - importers}
        assert steps == set(pipeline_stages(pipeline)), "one step per dvc.yaml stage"
        assert team.url in compiled and login["MLFLOW_TRACKING_PASSWORD"] not in compiled
        after = registry(pipeline, login=login)
        (added,) = [v for v in after["versions"] if v["version"] != dvc_version["version"]]
        kfp, dvc = run_of(after, added["version"]), run_of(after, dvc_version["version"])
        assert kfp["id"] != dvc["id"]
        assert kfp["metrics"] == dvc["metrics"]
        assert kfp["params"] == dvc["params"]
        lineage = ("git_commit", "data_hash", "train_data_hash", "params_hash", "task")
        assert {tag: kfp["tags"][tag] for tag in (*lineage, "model_gate")} == {
            tag: dvc["tags"][tag] for tag in (*lineage, "model_gate")
        }
        assert sorted(kfp["artifacts"]) == sorted(dvc["artifacts"])
        same = {*lineage, "serving_runtime", "onnx"} - {"task"}
        assert {tag: added["tags"].get(tag) for tag in same} == {
            tag: dvc_version["tags"].get(tag) for tag in same
        }
        assert outputs(pipeline) == checkout, "the run wrote into the checkout"
        # The promote step's decision, read back from the registry as after a cluster's
        # run, where the Train workflow hands it on to Deploy: the same model does not
        # beat the champion dvc repro made.
        if pipeline.caps["has_promotion"]:
            assert promotion.read_bytes() == promoted_by_dvc, "dvc.yaml's output was written"
            verdict = json.loads((pipeline.path / "build/kfp/promotion.json").read_text())
            assert (verdict["version"], verdict["promoted"]) == (added["version"], False)
            assert verdict["previous_champion"] == verdict["champion"] == dvc_version["version"]
            assert verdict["reason"] == added["tags"]["promotion.reason"]
            assert f"kfp: version {added['version']}: not promoted" in result.stdout
            # The Train workflow's hand-off, run as its runner runs it, reads that file.
            if pipeline.caps["has_cd"]:
                step = "Pass a new champion on to Deploy"
                uri = {"MLFLOW_TRACKING_URI": team.url}
                handed, summary = workflow_step(pipeline, "train.yml", step, uri, tmp_path)
                assert handed == {"deploy": "false"}, handed
                assert f"version {added['version']} is not promoted" in summary, summary
    finally:
        restore(pipeline)


def test_a_second_checkout_s_monitor_judges_the_team_server_s_champion(
    pipeline: Project, team: TeamServer, login: dict[str, str], tmp_path: Path
) -> None:
    """The service serves the team server's champion. Another machine's checkout (a
    clone: no data, no models, no store of its own), logged in to the team server: `make
    monitor` on the traffic the service logged judges that champion, against the drift
    reference logged with its run on the server, and makes no store of its own."""
    if not pipeline.caps["has_traceable_serving"]:
        pytest.skip(f"level {pipeline.level} serves no alias of the registry")
    model = httpx.get(
        f"{team.url}/api/2.0/mlflow/registered-models/get",
        params={"name": pipeline.answers["project_slug"]},
        auth=(login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"]),
        timeout=10,
    ).json()["registered_model"]
    aliases = {item["alias"]: item["version"] for item in model["aliases"]}
    served = tmp_path / "served" / "predictions.jsonl"
    settings = {"SERVING_PREDICTION_LOG": str(served), **login}
    with serving(pipeline, tmp_path / "serve.log", **settings) as server:
        champion = httpx.get(f"{server.url}/version", timeout=10).json()["version"]
        assert str(champion) == aliases["champion"], (champion, aliases)
        if not pipeline.caps["has_drift_detection"]:
            return  # no monitor at this level
        sent = pipeline.make("simulate", URL=server.url, ROWS="200")
        assert "200 answered, 0 failed" in sent.stdout, sent.stdout
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(pipeline.path), str(clone))
    elsewhere = open_project(clone, pipeline.tools)
    assert not (clone / "models" / "model.skops").exists() and not raw_data(elsewhere).exists()
    elsewhere.make("monitor", RETRAIN="", LOG=str(served), **login)
    verdict = json.loads((clone / "reports" / "monitor" / "verdict.json").read_text())
    assert verdict["champion"]["version"] == str(champion), verdict["champion"]
    assert verdict["window"]["requests"] == 200, verdict["window"]
    assert not (clone / "mlflow.db").exists(), "a store of its own"

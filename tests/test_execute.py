"""The slow tier: each built level, rendered and run as its README says, on one shared
environment: install, data, DVC, training, the notebook, the server over real HTTP,
the project's own tests, pre-commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import Render
from support import (
    Project,
    ProjectEnv,
    Server,
    git,
    installed,
    installed_versions,
    locked_versions,
    pinned_versions,
    pipeline_stages,
    png_colours,
    raw_data,
    recorded_md5,
    run,
    run_id,
    screenshot,
    selected_runs,
    serving,
    sha256,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=selected_runs(), ids=run_id)
def project(request: pytest.FixtureRequest, render: Render, project_env: ProjectEnv) -> Project:
    """A fresh render of the level on the dataset, installed with its own `make install`
    and committed."""
    level, dataset = request.param
    return installed(
        render(f"exec{level}{dataset}", maturity_level=level, dataset=dataset), project_env
    )


@pytest.fixture(scope="module")
def trained(project: Project) -> Project:
    """The project after `make data` and `make train`."""
    project.make("data")
    project.make("train")
    return project


# The fresh render -------------------------------------------------------------------------


def test_dvc_is_initialised_and_clean_on_the_fresh_render(project: Project) -> None:
    status = project.python("-m", "dvc", "status").stdout
    if project.caps["has_pipeline"]:  # DVC knows the stages, none of which has run yet
        dag = project.python("-m", "dvc", "dag", "--md").stdout
        assert all(stage in status and stage in dag for stage in pipeline_stages(project)), status
    else:
        assert "no data or pipelines tracked" in status
    assert git(project.path, "status", "--porcelain").stdout == ""


def test_the_first_install_wrote_the_lock_and_the_next_keeps_it(project: Project) -> None:
    """`make install` on the fresh render wrote uv.lock (committed with the project), which
    pins each of pyproject.toml's direct dependencies at its pinned version, and what it
    installed is the lock's; a second `make install` leaves the lock byte-identical."""
    assert git(project.path, "ls-files", "uv.lock").stdout.strip() == "uv.lock"
    locked, pinned = locked_versions(project.path), pinned_versions(project.path)
    for name, version in pinned.items():
        assert locked.get(name) == {version}, f"{name}: pyproject pins {version}"
    present = installed_versions(project.tools.python, project.path, project.env)
    for name in pinned:
        assert present[name] in locked[name], f"{name} {present[name]} is not the lock's"
    before = (project.path / "uv.lock").read_bytes()
    project.make("install")
    assert (project.path / "uv.lock").read_bytes() == before
    assert git(project.path, "status", "--porcelain").stdout == ""


def test_pre_commit_passes_on_the_fresh_render(project: Project) -> None:
    if not project.caps["has_precommit"]:
        pytest.skip(f"level {project.level} has no pre-commit")
    project.make("lint")
    assert git(project.path, "status", "--porcelain").stdout == "", "a hook changed files"


def test_the_package_type_checks(project: Project) -> None:
    if not project.caps["has_precommit"]:
        pytest.skip(f"level {project.level} has no type checking")
    project.make("typecheck")


def test_the_project_s_own_test_suite_passes(project: Project) -> None:
    if not project.caps["has_tests"]:
        pytest.skip(f"level {project.level} has no tests")
    result = project.make("test")
    assert " passed" in result.stdout and " failed" not in result.stdout
    # The tests write logs and an audit trail of their own, never into the project's.
    for own in ("logs", "audit"):
        assert not (project.path / own).exists(), f"the tests wrote the project's {own}"


# Data and training ------------------------------------------------------------------------


def test_the_raw_snapshot_is_versioned_by_dvc_and_ignored_by_git(trained: Project) -> None:
    raw = raw_data(trained)
    assert recorded_md5(trained, raw) == hashlib.md5(raw.read_bytes()).hexdigest()
    assert git(trained.path, "check-ignore", str(raw)).returncode == 0
    frame = pd.read_csv(raw)
    assert list(frame.columns) == [*trained.features, trained.target]
    for split in ("train", "test"):
        assert (trained.path / "data" / "processed" / f"{split}.csv").is_file()
    assert "up to date" in trained.python("-m", "dvc", "status").stdout


def test_after_training_make_maturity_finds_every_capability_in_place(trained: Project) -> None:
    """All of the level's capabilities check out once the project has run, but the drift
    monitor, which waits for the service's traffic."""
    text = trained.make("maturity").stdout
    assert f"MLOps maturity level {trained.level}," in text.splitlines()[0]
    marks = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in {"ok", "TODO"} and words[1].startswith("has_"):
            marks[words[1]] = words[0]
    owned = {name for name, present in trained.caps.items() if present}
    assert set(marks) == owned
    waiting = {"has_drift_detection"} & owned
    assert {name for name, mark in marks.items() if mark == "TODO"} == waiting, text


def test_ingest_is_repeatable_from_every_kind_of_source(trained: Project) -> None:
    """Ingest again, from the bundled copy and from a Parquet copy of the snapshot: the
    bytes, so the DVC hash, are the same as the first time."""
    if not trained.caps["has_scripted_ingest"]:
        pytest.skip(f"level {trained.level} ingests by hand")
    raw = raw_data(trained)
    recorded = recorded_md5(trained, raw)
    frame = pd.read_csv(raw)
    csv_source, parquet_source = trained.path / "source.csv", trained.path / "source.parquet"
    frame.sample(frac=1, random_state=1).to_csv(csv_source, index=False)  # another order
    frame.to_parquet(parquet_source, index=False)
    try:
        for source in (trained.contract["source"], str(parquet_source)):
            trained.python("-m", f"{trained.package}.ingest", "--source", source)
            assert hashlib.md5(raw.read_bytes()).hexdigest() == recorded, source
        trained.python(
            "-m", f"{trained.package}.ingest", "--source", str(csv_source), "--output", "x.csv"
        )
        assert len(pd.read_csv(trained.path / "x.csv")) == len(frame)
    finally:
        for leftover in (csv_source, parquet_source, trained.path / "x.csv"):
            leftover.unlink(missing_ok=True)
    bad = trained.python("-m", f"{trained.package}.ingest", "--source", "nowhere.csv", check=False)
    assert bad.returncode == 2 and "nowhere.csv" in bad.stderr
    assert "up to date" in trained.python("-m", "dvc", "status").stdout


def test_training_is_reproducible(trained: Project, tmp_path: Path) -> None:
    """Train and evaluate again, by each stage's CLI, into other files: same metrics."""
    first = json.loads((trained.path / "reports" / "metrics.json").read_text())
    assert first["accuracy"] > 0.8 if trained.classifies else first["r2"] > 0.3
    model, metrics = tmp_path / "model.joblib", tmp_path / "metrics.json"
    train_args = ["--output", str(model)]
    evaluate_args = ["--model", str(model), "--output", str(metrics)]
    if trained.caps["has_tracking"]:
        train_args += ["--run", str(tmp_path / "run.json")]
        evaluate_args += ["--run", str(tmp_path / "run.json"), "--plots", str(tmp_path)]
    trained.python("-m", f"{trained.package}.train", *train_args)
    trained.python("-m", f"{trained.package}.evaluate", *evaluate_args)
    assert json.loads(metrics.read_text()) == first


def test_batch_prediction_from_the_cli(trained: Project, tmp_path: Path) -> None:
    rows, output = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    test_set = pd.read_csv(trained.path / "data" / "processed" / "test.csv")
    test_set.drop(columns=trained.target).head(10).to_csv(rows, index=False)
    trained.make("predict", INPUT=str(rows), OUTPUT=str(output))
    predictions = pd.read_csv(output)
    assert len(predictions) == 10
    assert ("label" if trained.classifies else "prediction") in predictions.columns


def test_dvc_push_and_pull_restore_identical_bytes(trained: Project) -> None:
    """Data and model go to the default local remote, outside the project, and come back
    byte for byte into an emptied workspace and cache."""
    raw = raw_data(trained)
    model = trained.path / "models" / "model.joblib"
    if not trained.caps["has_pipeline"]:  # README step 7; at level 2 the pipeline owns it
        trained.python("-m", "dvc", "add", "models/model.joblib")
    expected = {raw: sha256(raw), model: sha256(model)}
    trained.make("push")
    remote = trained.path.parent / f"{trained.answers['project_slug']}-dvc-storage"
    assert remote.is_dir() and any(remote.rglob("*")), "the remote is outside the project"
    for path in expected:
        path.unlink()
    subprocess.run(["rm", "-rf", str(trained.path / ".dvc" / "cache")], check=True)
    trained.make("pull")
    assert {path: sha256(path) for path in expected} == expected


def test_the_notebook_executes_headless(trained: Project) -> None:
    result = trained.make("notebook")
    assert "Executing notebook" in result.stderr + result.stdout


# Serving over real HTTP -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(trained: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`make serve`, started as a real process on a free port."""
    with serving(trained, tmp_path_factory.mktemp("server") / "stdout.log") as running:
        yield running


def test_served_predictions_equal_the_pipeline_s(
    trained: Project, server: Server, tmp_path: Path
) -> None:
    categories = [f["name"] for f in trained.contract["features"] if f["kind"] == "categorical"]
    test_set = pd.read_csv(
        trained.path / "data" / "processed" / "test.csv", dtype=dict.fromkeys(categories, str)
    )
    rows = test_set.drop(columns=trained.target).head(25)
    health = httpx.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    rows.to_csv(tmp_path / "rows.csv", index=False)
    records = json.loads(rows.to_json(orient="records"))  # a missing value as null
    one = httpx.post(f"{server.url}/predict", json=records[0], timeout=10)
    batch = httpx.post(f"{server.url}/predict", json=records, timeout=10)
    assert one.status_code == 200 and batch.status_code == 200, batch.text

    trained.make("predict", INPUT=str(tmp_path / "rows.csv"), OUTPUT=str(tmp_path / "out.csv"))
    expected = pd.read_csv(tmp_path / "out.csv", dtype={"label": str})
    served = batch.json()["predictions"]
    tolerance = trained.served_tolerance
    if not trained.classifies:
        values = [prediction["value"] for prediction in served]
        spread = float(test_set[trained.target].std())
        assert values == pytest.approx(expected["prediction"].tolist(), abs=tolerance * spread)
        assert one.json()["predictions"][0]["value"] == pytest.approx(values[0], abs=1e-9)
        return
    assert [p["label"] for p in served] == expected["label"].tolist()
    assert one.json()["predictions"][0]["label"] == expected["label"][0]
    for prediction, (_, row) in zip(served, expected.iterrows(), strict=True):
        for name, probability in prediction["probabilities"].items():
            assert probability == pytest.approx(row[f"proba_{name}"], abs=tolerance)


def test_bad_requests_are_refused_with_the_field_named(trained: Project, server: Server) -> None:
    if not trained.caps["has_request_logs"]:
        pytest.skip(f"level {trained.level} makes no promise about bad input")
    row = trained.contract["example"]
    features = trained.contract["features"]
    required = next(f["name"] for f in features if not f["nullable"])
    missing = {key: value for key, value in row.items() if key != required}
    response = httpx.post(f"{server.url}/predict", json=missing, timeout=10)
    assert response.status_code == 422 and required in response.text
    number = next(f["name"] for f in features if f["kind"] in ("numeric", "integer"))
    wrong = {**row, number: "seven"}
    response = httpx.post(f"{server.url}/predict", json=wrong, timeout=10)
    assert response.status_code == 422 and number in response.text
    categorical = [f for f in features if f["kind"] == "categorical"]
    if categorical:  # a category outside the contract: the field and the allowed values
        response = httpx.post(
            f"{server.url}/predict", json={**row, categorical[0]["name"]: "Atlantis"}, timeout=10
        )
        assert response.status_code == 422 and categorical[0]["name"] in response.text
        assert all(category in response.text for category in categorical[0]["categories"])
    nullable = [f["name"] for f in features if f["nullable"]]
    if nullable:  # a missing value where the contract allows one is predicted
        response = httpx.post(f"{server.url}/predict", json={**row, nullable[0]: None}, timeout=10)
        assert response.status_code == 200, response.text
    response = httpx.post(f"{server.url}/predict", json=[row] * 1001, timeout=30)
    assert response.status_code == 413 and "1000" in response.json()["detail"]
    response = httpx.post(
        f"{server.url}/predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500


def test_schema_fuzzing_over_http_finds_no_server_error(trained: Project, server: Server) -> None:
    if not trained.caps["has_tests"]:
        pytest.skip(f"level {trained.level} has no fuzzing tools")
    result = run(
        [
            str(trained.tools.venv / "bin" / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "20261126",  # repeatable: a failure here reproduces with the same cases
            "--workers",
            "1",
        ],
        trained.path,
        trained.env,
        check=False,
    )
    assert result.returncode == 0, str(result)


def test_the_interactive_docs_look_right_in_a_browser(
    trained: Project, server: Server, tmp_path: Path
) -> None:
    """`/docs` drawn by headless Chromium with no network: Swagger UI's files come from the
    service itself, so the page has its title and the routes, not a blank page."""
    shot = tmp_path / "api-docs.png"
    title = screenshot(f"{server.url}/docs", shot)
    assert title == f"{trained.answers['project_name']} - Swagger UI"
    assert png_colours(shot) >= 16, "a blank page"


def test_every_request_writes_one_json_log_line(trained: Project, server: Server) -> None:
    """Runs last against the server: it stops it to read everything the service printed."""
    if not trained.caps["has_request_logs"]:
        pytest.skip(f"level {trained.level} has no request logs")
    row = trained.contract["example"]
    sent = {f"log-test-{index}": status for index, status in enumerate([200, 422, 200, 404])}
    for request_id, status in sent.items():
        path = "/nowhere" if status == 404 else "/predict"
        body = row if status == 200 else {}
        headers = {"x-request-id": request_id}
        response = httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.headers["x-request-id"] == request_id
    output = server.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    logged = {}
    for line in lines:
        if line["request_id"] in sent:
            assert line["request_id"] not in logged, "two log lines for one request"
            logged[line["request_id"]] = line["status"]
    assert logged == sent
    assert all({"method", "path", "status", "duration_ms"} <= set(line) for line in lines)

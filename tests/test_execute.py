"""The slow tier: each built level, rendered and run as its user runs it. Its own `make
install` makes its own .venv (uv on PATH, as the README says; at one level pip, with no uv
anywhere), then every command of its GUIDE.md's shell blocks runs, in order, as written,
in a plain shell with no environment on PATH (mlops_harness/guide.py): install, data, training,
the service over real HTTP, predictions for a file, the project's own tests, lint and
types, deployment and the monitors where the level has them. The checks below read what
the guide's commands showed and left, and ask the service it left running.

The highest level runs on the user's data, not ours: docs/your-data.md's commands make a
project for a table nobody designed for the template (mlops_harness/data.py), and then
its guide runs, with `make contract` and no other edit (the own_data checks, at the end)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mlops_harness.data import AWKWARD_TARGET, awkward_table
from mlops_harness.environments import UserShell, user_env
from mlops_harness.guide import Guide, commands, guided
from mlops_harness.ladder import OWN_DATA, capabilities, run_id, selected_runs
from mlops_harness.locks import installed_versions, locked_versions, not_as_locked, pinned_versions
from mlops_harness.paths import CACHE, ROOT, tool
from mlops_harness.processes import appended, git, run
from mlops_harness.projects import (
    Project,
    open_project,
    pipeline_stages,
    raw_data,
    recorded_md5,
    sha256,
)
from mlops_harness.promtool import ensure_stack
from mlops_harness.registry import registry_state
from mlops_harness.rendering import Render
from mlops_harness.screenshots import png_colours, screenshot
from mlops_harness.servers import served_by, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.xdist_scope("parameter")]


def written_files(project: Path, *folders: str) -> dict[str, tuple[int, int]]:
    """Every file under ``folders``, with its size and modification time."""
    found = {}
    for folder in folders:
        for path in sorted((project / folder).rglob("*")):
            if path.is_file():
                stat = path.stat()
                found[path.relative_to(project).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


# The boosting libraries a level's render chooses: the regression's project trains, saves
# and loads their families in its own `make test` (test_pipeline runs them end to end).
LIBRARIES = {2: ["lightgbm", "xgboost"]}


@dataclass
class Guided:
    """A project after its guide: the commands' outcomes, the service it left running."""

    project: Project
    guide: Guide
    fresh: dict[str, str]  # `dvc status` and `git status` after the install and first commit
    around_tests: dict[str, dict[str, tuple[int, int]]]  # the project's files, around `make test`

    @property
    def url(self) -> str:
        return self.guide.url()


# docs/your-data.md's placeholders (the template, the user's file), and the user's file.
TEMPLATE_PLACEHOLDER = "/absolute/path/of/the/template"
FILE_PLACEHOLDER = "/wherever/loans.csv"
SOURCE = "data/external/loans.csv"


def your_data(scratch: Path, template: Path, level: int) -> str:
    """docs/your-data.md, for a table nobody designed for the template written in
    ``scratch``: its commands make the project, as a user runs them."""
    users_file = scratch / "loans.csv"
    awkward_table().to_csv(users_file, index=False)
    docs = (ROOT / "docs" / "your-data.md").read_text(encoding="utf-8")
    docs = docs.replace(TEMPLATE_PLACEHOLDER, str(template)).replace(
        FILE_PLACEHOLDER, str(users_file)
    )
    return docs.replace("maturity_level=4", f"maturity_level={level}")


@pytest.fixture(scope="module", params=selected_runs(), ids=run_id)
def guided_run(
    request: pytest.FixtureRequest,
    render: Render,
    template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Guided]:
    """A fresh render of the level on its dataset (at the top level, docs/your-data.md's
    commands for a user's own file), and its guide run from start to end."""
    level, dataset, installer = request.param
    if dataset == OWN_DATA:  # docs/your-data.md's commands make the project, in the guide
        scratch = tmp_path_factory.mktemp("own")
        before = commands(your_data(scratch, template, level))
        path, cwd = scratch / "my-project", scratch
    else:
        libraries = LIBRARIES.get(level, [])
        answers = {"maturity_level": level, "dataset": dataset, "model_libraries": libraries}
        path = render(f"exec{level}{dataset}", **answers)
        before, cwd = [], path
    around: dict[str, dict[str, tuple[int, int]]] = {}

    # What the project's own tests must leave alone: its data, models, reports, logs, trail.
    kept = ("data", "models", "reports", "logs", "audit")

    def before_tests() -> None:
        around["before"] = written_files(path, *kept)

    def after_tests() -> None:
        around["after"] = written_files(path, *kept)

    if capabilities(level)["has_observe_stack"]:
        ensure_stack()  # the guide's `make observe` starts Prometheus and the rest
    with guided(cwd, user_env(installer == "uv"), tmp_path_factory.mktemp("guide")) as guide:
        guide.run(before)
        assert guide.cwd == path
        project = open_project(path, UserShell(path, uv=installer == "uv"))
        steps = commands((path / "GUIDE.md").read_text(encoding="utf-8"))
        first_commit = next(
            index for index, step in enumerate(steps) if step.text.startswith("git add --all &&")
        )
        guide.run(steps[: first_commit + 1])
        fresh = {
            "dvc status": project.python("-m", "dvc", "status").stdout,
            "git status": git(path, "status", "--porcelain").stdout,
        }
        try:
            guide.run(steps[first_commit + 1 :], around={"make test": (before_tests, after_tests)})
        finally:  # what each command showed, for a person to read (.cache/ is git-ignored)
            record = CACHE / "guide-runs" / f"{run_id(request.param)}.md"
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(guide.summary(), encoding="utf-8")
        yield Guided(project, guide, fresh, around)


@pytest.fixture(scope="module")
def trained(guided_run: Guided) -> Project:
    return guided_run.project


# The fresh render and its install ---------------------------------------------------------


def test_dvc_is_initialised_and_clean_on_the_fresh_render(guided_run: Guided) -> None:
    project, status = guided_run.project, guided_run.fresh["dvc status"]
    if project.caps["has_pipeline"]:  # DVC knows the stages, none of which has run yet
        dag = project.python("-m", "dvc", "dag", "--md").stdout
        assert all(stage in status and stage in dag for stage in pipeline_stages(project)), status
    else:
        assert "no data or pipelines tracked" in status
    assert guided_run.fresh["git status"] == "", "the guide's first commit left files out"


def test_the_install_is_exactly_the_lock_or_without_uv_the_pins(guided_run: Guided) -> None:
    """With uv: the first `make install` wrote uv.lock (the guide's first commit holds it),
    .venv is exactly the lock (uv's own check agrees), and a second install leaves the
    lock byte for byte. Without uv: pip installed pyproject.toml's pins, and the install
    said plainly that no lock was written."""
    project = guided_run.project
    installing = guided_run.guide.outcome("make install").output
    present = installed_versions(project.tools.python, project.path, project.env)
    pinned = pinned_versions(project.path)
    if isinstance(project.tools, UserShell) and not project.tools.uv:
        assert "uv is not on PATH" in installing and "no uv.lock was written" in installing
        assert not (project.path / "uv.lock").exists()
        last = "\n".join(installing.strip().splitlines()[-3:])
        assert "no uv.lock was written" in last, "pip's output buries what the install says"
        for name, version in pinned.items():
            assert present.get(name) == version, f"{name}: pyproject pins {version}"
        return
    assert git(project.path, "ls-files", "uv.lock").stdout.strip() == "uv.lock"
    locked = locked_versions(project.path)
    for name, version in pinned.items():
        assert locked.get(name) == {version}, f"{name}: pyproject pins {version}"
    assert not not_as_locked(present, locked), "installed, not as locked"
    env = {**project.env, "UV_PROJECT_ENVIRONMENT": str(project.tools.venv)}
    run([tool("uv"), "sync", "--locked", "--check"], project.path, env)
    before = (project.path / "uv.lock").read_bytes()
    project.make("install")
    assert (project.path / "uv.lock").read_bytes() == before


def test_lint_checked_the_project_s_files(guided_run: Guided) -> None:
    """`make lint` ran every hook on real files: a fresh copy is tracked (Copier staged it),
    so no hook passed having had nothing to check."""
    if not guided_run.project.caps["has_precommit"]:
        pytest.skip(f"level {guided_run.project.level} has no pre-commit")
    linted = guided_run.guide.outcome("make lint").output
    for hook in ("ruff check", "ruff format", "check yaml", "detect secrets"):
        line = next(line for line in linted.splitlines() if line.startswith(hook))
        assert line.endswith("Passed"), line


def test_the_package_type_checks(guided_run: Guided) -> None:
    if not guided_run.project.caps["has_precommit"]:
        pytest.skip(f"level {guided_run.project.level} has no type checking")
    assert "Success: no issues found" in guided_run.guide.outcome("make typecheck").output


def test_the_project_s_own_test_suite_passes(guided_run: Guided) -> None:
    """It ran last, on the project as the guide left it (at level 4, on the data retraining
    grew); it wrote nothing into the project's data, models, reports, logs or audit trail
    (its own go to scratch files)."""
    if not guided_run.project.caps["has_tests"]:
        pytest.skip(f"level {guided_run.project.level} has no tests")
    output = guided_run.guide.outcome("make test").output
    assert " passed" in output and " failed" not in output
    before, after = guided_run.around_tests["before"], guided_run.around_tests["after"]
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    assert not changed, f"the project's tests changed its files: {changed}"


# Data and training ------------------------------------------------------------------------


def test_the_raw_snapshot_is_versioned_by_dvc_and_ignored_by_git(trained: Project) -> None:
    raw = raw_data(trained)
    assert recorded_md5(trained, raw) == hashlib.md5(raw.read_bytes()).hexdigest()
    assert git(trained.path, "check-ignore", str(raw)).returncode == 0
    frame = pd.read_csv(raw)
    sensitive = [item["name"] for item in trained.contract.get("sensitive", [])]
    assert list(frame.columns) == [*trained.features, *sensitive, trained.target]
    for split in ("train", "test"):
        assert (trained.path / "data" / "processed" / f"{split}.csv").is_file()
    assert "up to date" in trained.python("-m", "dvc", "status").stdout


def test_after_the_guide_make_maturity_finds_every_capability_in_place(
    trained: Project,
) -> None:
    text = trained.make("maturity").stdout
    assert f"MLOps maturity level {trained.level}," in text.splitlines()[0]
    marks = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in {"ok", "TODO"} and words[1].startswith("has_"):
            marks[words[1]] = words[0]
    assert set(marks) == {name for name, present in trained.caps.items() if present}
    assert set(marks.values()) == {"ok"}, text


def test_ingest_is_repeatable_from_every_kind_of_source(trained: Project) -> None:
    """Ingest again, from the contract's source and from CSV (rows in another order) and
    Parquet copies of it: the bytes, so the DVC hash, are the same as the first time."""
    if not trained.caps["has_scripted_ingest"]:
        pytest.skip(f"level {trained.level} ingests by hand")
    raw = raw_data(trained)
    recorded = recorded_md5(trained, raw)
    copies = trained.path / "source.csv", trained.path / "source.parquet"
    trained.python(
        "-c",
        f"from {trained.package}.mlops.contract import load\n"
        f"from {trained.package}.mlops.sources import read_source\n"
        "frame = read_source(load().source)\n"
        f"frame.to_parquet({str(copies[1])!r}, index=False)\n"
        f"frame.sample(frac=1, random_state=1).to_csv({str(copies[0])!r}, index=False)\n",
    )
    try:
        for source in (trained.contract["source"], str(copies[1])):
            trained.python("-m", f"{trained.package}.ingest", "--source", source)
            assert hashlib.md5(raw.read_bytes()).hexdigest() == recorded, source
        out = trained.path / "x.csv"
        trained.python(
            "-m", f"{trained.package}.ingest", "--source", str(copies[0]), "--output", str(out)
        )
        assert len(pd.read_csv(out)) == len(pd.read_csv(raw))
    finally:
        for leftover in (*copies, trained.path / "x.csv"):
            leftover.unlink(missing_ok=True)
    bad = trained.python("-m", f"{trained.package}.ingest", "--source", "nowhere.csv", check=False)
    assert bad.returncode == 2 and "nowhere.csv" in bad.stderr


def test_training_is_reproducible(trained: Project, tmp_path: Path) -> None:
    """Train and evaluate again, by each stage's CLI, into other files: same metrics."""
    first = json.loads((trained.path / "reports" / "metrics.json").read_text())
    model, metrics = tmp_path / "model.skops", tmp_path / "metrics.json"
    train_args = ["--output", str(model)]
    evaluate_args = ["--model", str(model), "--output", str(metrics)]
    if trained.caps["has_tracking"]:
        train_args += ["--run", str(tmp_path / "run.json")]
        evaluate_args += ["--run", str(tmp_path / "run.json"), "--plots", str(tmp_path)]
    trained.python("-m", f"{trained.package}.train", *train_args)
    trained.python("-m", f"{trained.package}.evaluate", *evaluate_args)
    assert json.loads(metrics.read_text()) == first


def test_the_guide_s_predictions_keep_the_file_s_rows_and_columns(guided_run: Guided) -> None:
    """`make predict` on 20 rows of the data as the file has them: every row and column
    back, in order, with the predictions added."""
    project = guided_run.project
    rows = pd.read_csv(project.path / "rows.csv", dtype=str, keep_default_na=False)
    out = pd.read_csv(project.path / "predictions.csv", dtype=str, keep_default_na=False)
    assert len(rows) == 20 and out.iloc[:, : len(rows.columns)].equals(rows)
    added = list(out.columns[len(rows.columns) :])
    assert added[0] == ("label" if project.classifies else "prediction"), added


def test_dvc_push_and_pull_restore_identical_bytes(trained: Project) -> None:
    """Data and model go to the default local remote, outside the project, and come back
    byte for byte into an emptied workspace and cache."""
    raw = raw_data(trained)
    model = trained.path / "models" / "model.skops"
    if not trained.caps["has_pipeline"]:  # the guide's by-hand steps `dvc add` the model
        assert (trained.path / "models" / "model.skops.dvc").is_file()
    expected = {raw: sha256(raw), model: sha256(model)}
    trained.make("push")
    remote = trained.path.parent / f"{trained.answers['project_slug']}-dvc-storage"
    assert remote.is_dir() and any(remote.rglob("*")), "the remote is outside the project"
    for path in expected:
        path.unlink()
    subprocess.run(["rm", "-rf", str(trained.path / ".dvc" / "cache")], check=True)
    trained.make("pull")
    assert {path: sha256(path) for path in expected} == expected


def test_the_notebook_executes_headless_and_keeps_its_outputs(trained: Project) -> None:
    trained.make("notebook")
    executed = trained.path / "reports" / "notebooks" / "01-exploration.ipynb"
    cells = json.loads(executed.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(cell["execution_count"] for cell in code)
    assert sum(len(cell["outputs"]) for cell in code) > 0, "the executed copy has no outputs"
    assert git(trained.path, "check-ignore", str(executed)).returncode == 0


# The service the guide left running -------------------------------------------------------


def test_served_predictions_equal_the_pipeline_s(guided_run: Guided, tmp_path: Path) -> None:
    trained, url = guided_run.project, guided_run.url
    categories = [f["name"] for f in trained.contract["features"] if f["kind"] == "categorical"]
    test_set = pd.read_csv(
        trained.path / "data" / "processed" / "test.csv", dtype=dict.fromkeys(categories, str)
    )
    rows = test_set.loc[:, trained.features].head(25)  # a request holds the features alone
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    rows.to_csv(tmp_path / "rows.csv", index=False)
    predicted = trained.make(
        "predict", INPUT=str(tmp_path / "rows.csv"), OUTPUT=str(tmp_path / "out.csv")
    )
    wait_until_serving(url, served_by(predicted.stderr))  # a new champion, reloaded
    records = json.loads(rows.to_json(orient="records"))  # a missing value as null
    one = httpx.post(f"{url}/predict", json=records[0], timeout=10)
    batch = httpx.post(f"{url}/predict", json=records, timeout=10)
    assert one.status_code == 200 and batch.status_code == 200, batch.text
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


def test_version_names_the_commit_the_model_was_trained_on(guided_run: Guided) -> None:
    """The guide commits before it trains: the served model's lineage names a commit of
    the project's history (with -dirty: the tree had changes then), not "unknown"."""
    if not guided_run.project.caps["has_traceable_serving"]:
        pytest.skip(f"level {guided_run.project.level} has no /version")
    commit = httpx.get(f"{guided_run.url}/version", timeout=10).json()["git_commit"]
    sha = commit.removesuffix("-dirty")
    assert len(sha) == 40, commit
    assert git(guided_run.project.path, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def test_bad_requests_are_refused_with_the_field_named(guided_run: Guided) -> None:
    trained, url = guided_run.project, guided_run.url
    if not trained.caps["has_request_logs"]:
        pytest.skip(f"level {trained.level} makes no promise about bad input")
    row = trained.contract["example"]
    features = trained.contract["features"]
    required = next(f["name"] for f in features if not f["nullable"])
    missing = {key: value for key, value in row.items() if key != required}
    response = httpx.post(f"{url}/predict", json=missing, timeout=10)
    assert response.status_code == 422 and required in response.text
    number = next(f["name"] for f in features if f["kind"] in ("numeric", "integer"))
    wrong = {**row, number: "seven"}
    response = httpx.post(f"{url}/predict", json=wrong, timeout=10)
    assert response.status_code == 422 and number in response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", number]]
    categorical = [f for f in features if f["kind"] == "categorical"]
    if categorical:  # a category outside the contract: the field and the allowed values
        response = httpx.post(
            f"{url}/predict", json={**row, categorical[0]["name"]: "Atlantis"}, timeout=10
        )
        assert response.status_code == 422 and categorical[0]["name"] in response.text
        assert all(category in response.text for category in categorical[0]["categories"])
    nullable = [f["name"] for f in features if f["nullable"]]
    if nullable:  # a missing value where the contract allows one is predicted
        response = httpx.post(f"{url}/predict", json={**row, nullable[0]: None}, timeout=10)
        assert response.status_code == 200, response.text
    response = httpx.post(f"{url}/predict", json=[row] * 1001, timeout=30)
    assert response.status_code == 413 and "1000" in response.json()["detail"]
    response = httpx.post(
        f"{url}/predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500


def test_schema_fuzzing_over_http_finds_no_server_error(guided_run: Guided) -> None:
    trained = guided_run.project
    if not trained.caps["has_tests"]:
        pytest.skip(f"level {trained.level} has no fuzzing tools")
    result = run(
        [
            str(trained.tools.venv / "bin" / "schemathesis"),
            "run",
            f"{guided_run.url}/openapi.json",
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


def test_the_interactive_docs_look_right_in_a_browser(guided_run: Guided, tmp_path: Path) -> None:
    """`/docs` drawn by headless Chromium with no network: Swagger UI's files come from the
    service itself, so the page has its title and the routes, not a blank page."""
    shot = tmp_path / "api-docs.png"
    title = screenshot(f"{guided_run.url}/docs", shot)
    assert title == f"{guided_run.project.answers['project_name']} - Swagger UI"
    assert png_colours(shot) >= 16, "a blank page"


def test_every_request_writes_one_json_log_line(guided_run: Guided) -> None:
    trained, url = guided_run.project, guided_run.url
    if not trained.caps["has_request_logs"]:
        pytest.skip(f"level {trained.level} has no request logs")
    row = trained.contract["example"]
    sent = {f"log-test-{index}": status for index, status in enumerate([200, 422, 200, 404])}
    for request_id, status in sent.items():
        path = "/nowhere" if status == 404 else "/predict"
        body = row if status == 200 else {}
        headers = {"x-request-id": request_id}
        response = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.headers["x-request-id"] == request_id
    # The line is written once the response is sent, so the last one may trail the answer.
    deadline = time.monotonic() + 10
    while True:
        text = guided_run.guide.server_logs[0].read_text()
        if all(request_id in text for request_id in sent) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The service's own records (a model loaded, a reload) are JSON lines of the same shape.
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    lines = [line for line in lines if line["message"] == "request"]
    logged = {}
    for line in lines:
        if line["request_id"] in sent:
            assert line["request_id"] not in logged, "two log lines for one request"
            logged[line["request_id"]] = line["status"]
    assert logged == sent
    assert all({"method", "path", "status", "duration_ms"} <= set(line) for line in lines)


# The user's own table, at the top level -------------------------------------------------
# A project made for a file nobody designed for the template goes from `copier copy` to a
# served prediction and the monitors with `make contract` and no other edit: the tests
# marked own_data run on that run alone (mlops_harness/scheduling.py deselects the others).


@pytest.fixture(scope="module")
def own(guided_run: Guided) -> Guided:
    assert guided_run.project.answers["dataset"] == OWN_DATA
    return guided_run


@pytest.fixture(scope="module")
def project(own: Guided) -> Project:
    return own.project


@pytest.mark.own_data
def test_the_contract_is_inferred_from_the_user_s_file(project: Project) -> None:
    contract = project.contract
    assert contract["source"] == SOURCE and contract["task"] == "classification"
    assert contract["target"] == {
        "column": AWKWARD_TARGET,
        "name": "loan_status",
        "labels": ["approved", "rejected"],
    }
    kinds = {f["column"]: (f["name"], f["kind"], f["nullable"]) for f in contract["features"]}
    assert kinds == {
        "Annual Income": ("annual_income", "numeric", True),
        "Home Ownership": ("home_ownership", "categorical", True),
        "Yrs Since.PhD": ("yrs_since_phd", "integer", False),
        "Interest Rate": ("interest_rate", "numeric", False),
        "Has Co-Signer": ("has_co_signer", "boolean", False),
    }
    dropped = {item["column"]: item["reason"] for item in contract["dropped"]}
    assert set(dropped) == {"Loan ID", "Row", "Branch", "Decision Code"}
    assert "identifier" in dropped["Loan ID"] and "one value" in dropped["Branch"]
    assert "identifier" in dropped["Row"], "shuffled row numbers count rows"
    assert "suspected leak" in dropped["Decision Code"]
    assert [item["column"] for item in contract["sensitive"]] == ["Applicant Race"]


@pytest.mark.own_data
def test_the_pipeline_trained_on_it(own: Guided) -> None:
    """The guide's `make train`, on the file; the snapshot is the file's rows (and, after
    the guide's retraining at level 4, the labelled live rows it saved)."""
    trained = own.guide.outcome("make train").output
    accuracy = float(re.search(r"evaluate: accuracy=([0-9.]+)", trained).group(1))  # type: ignore[union-attr]
    assert accuracy > 0.85  # the labels follow from income and ownership
    snapshot = pd.read_csv(own.project.path / "data" / "raw" / "data.csv")
    assert list(snapshot.columns) == [
        "annual_income", "home_ownership", "yrs_since_phd", "interest_rate",
        "has_co_signer", "applicant_race", "loan_status",
    ]  # fmt: skip
    live = sum(
        len(pd.read_csv(path)) for path in (own.project.path / "data" / "feedback").glob("*.csv")
    )
    assert len(snapshot) == len(awkward_table()) + live


@pytest.mark.own_data
def test_a_file_it_cannot_use_is_refused_and_the_contract_kept(project: Project) -> None:
    contract = (project.path / "data" / "contract.yaml").read_bytes()
    for variables, message in (
        ({"TARGET": "Loan Stat"}, "did you mean 'Loan Status'"),
        ({"SOURCE": "data/external/absent.csv"}, "no such file"),
    ):
        result = project.make("contract", check=False, **variables)
        assert result.returncode != 0 and message in result.stderr, result
        assert (project.path / "data" / "contract.yaml").read_bytes() == contract


@pytest.mark.own_data
def test_predictions_for_rows_cut_from_the_file_keep_its_headers_and_id(
    own: Guided, tmp_path: Path
) -> None:
    """The guide cut 20 rows from the user's file and asked `make predict` for them: the
    output is those rows, the id column and every header as the file spells them, with
    the predictions added. Asked again now (the guide's retraining may have moved the
    champion since), they are what the service answers for the same rows keyed by the
    file's headers."""
    path = own.project.path
    rows = pd.read_csv(path / "rows.csv", dtype=str, keep_default_na=False)
    out = pd.read_csv(path / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(rows.columns) == list(awkward_table().columns)
    assert out.loc[:, list(rows.columns)].equals(rows) and "Loan ID" in out.columns
    assert "'Loan ID' (dropped)" in own.guide.outcome("make predict").output
    predicted = own.project.make("predict", INPUT="rows.csv", OUTPUT=str(tmp_path / "now.csv"))
    wait_until_serving(own.url, served_by(predicted.stderr))
    now = pd.read_csv(tmp_path / "now.csv", dtype=str, keep_default_na=False)
    source = pd.read_csv(path / "rows.csv")
    features = [f["column"] for f in own.project.contract["features"]]
    records = json.loads(source.loc[:, features].to_json(orient="records"))
    response = httpx.post(f"{own.url}/predict", json=records, timeout=30)
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == now["label"].tolist()


@pytest.mark.own_data
def test_served_predictions_equal_the_batch_cli_s(
    project: Project, own: Guided, tmp_path: Path
) -> None:
    server = own.url
    rows = awkward_table(rows=30, seed=99)
    renamed = {f["column"]: f["name"] for f in project.contract["features"]}
    rows = rows.loc[:, list(renamed)].rename(columns=renamed)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predicted = project.make(
        "predict", INPUT=str(tmp_path / "rows.csv"), OUTPUT=str(tmp_path / "out.csv")
    )
    wait_until_serving(server, served_by(predicted.stderr))
    expected = pd.read_csv(tmp_path / "out.csv")
    records = json.loads(rows.to_json(orient="records"))  # missing values as null
    response = httpx.post(f"{server}/predict", json=records, timeout=30)
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]
    assert [p["label"] for p in served] == expected["label"].tolist()
    for prediction, (_, row) in zip(served, expected.iterrows(), strict=True):
        for label, probability in prediction["probabilities"].items():
            expected_probability = row[f"proba_{label}"]
            assert probability == pytest.approx(expected_probability, abs=project.served_tolerance)


@pytest.mark.own_data
def test_bad_requests_get_a_422_that_says_what_is_allowed(project: Project, own: Guided) -> None:
    server = own.url
    example = yaml.safe_load((project.path / "data" / "contract.yaml").read_text())["example"]
    cases = {
        "home_ownership": ({**example, "home_ownership": "CASTLE"}, ["MORTGAGE", "OWN", "RENT"]),
        "yrs_since_phd": ({**example, "yrs_since_phd": None}, []),
        "annual_income": ({**example, "annual_income": "lots"}, []),
        "has_co_signer": ({**example, "has_co_signer": "perhaps"}, []),
    }
    for field, (body, allowed) in cases.items():
        response = httpx.post(f"{server}/predict", json=body, timeout=10)
        assert response.status_code == 422, (field, response.text)
        assert field in response.text and all(value in response.text for value in allowed)
    gaps = {**example, "annual_income": None, "home_ownership": None}
    response = httpx.post(f"{server}/predict", json=gaps, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] in ("approved", "rejected")


def monitored(project: Project, own: Guided, **simulate: str) -> dict[str, Any]:
    """`make simulate` (400 rows of the user's file), then `make monitor` on that traffic
    alone (the guide's own traffic came before it): the verdict."""
    if not project.caps["has_drift_detection"]:
        pytest.skip(f"level {project.level} has no monitors")
    log = project.path / "logs" / "predictions.jsonl"
    before = log.stat().st_size
    sent = project.make("simulate", URL=own.url, ROWS="400", **simulate)
    assert "400 answered, 0 failed" in sent.stdout, sent.stdout
    sliced = project.path / "logs" / "this-test.jsonl"
    sliced.write_bytes(appended(log, before, 400))
    project.make("monitor", RETRAIN="", LOG=str(sliced))
    verdict: dict[str, Any] = json.loads(
        (project.path / "reports" / "monitor" / "verdict.json").read_text()
    )
    return verdict


@pytest.mark.own_data
def test_the_user_s_own_rows_sent_again_move_no_feature(project: Project, own: Guided) -> None:
    """The monitor does not cry wolf on unchanged traffic: the file's own rows, whose
    rates are float32 values (3.0999999046...), flag nothing."""
    verdict = monitored(project, own)
    assert verdict["drift"]["drifted_features"] == []


@pytest.mark.own_data
def test_the_monitors_flag_exactly_the_shifted_features(project: Project, own: Guided) -> None:
    """Level 4 on the user's data: traffic with a flag set in every row and a number moved
    by one and a half standard deviations (within the contract's bounds, which the
    service holds requests to) is caught on those two features, and on no other."""
    verdict = monitored(project, own, SHIFT="has_co_signer=true annual_income=1.5")
    assert sorted(verdict["drift"]["drifted_features"]) == ["annual_income", "has_co_signer"]


@pytest.mark.own_data
def test_the_kfp_pipeline_on_it_registers_what_dvc_repro_registered(project: Project) -> None:
    """The same pipeline on Kubeflow Pipelines' local runner (`make kfp-run-local`, in the
    project's own .venv), on the user's file and the labelled rows the guide saved: the
    version it registers has the metrics and the data lineage of the one the guide's last
    `dvc repro` registered from the same inputs, and it wins nothing from that one. The
    checkout's outputs are left as they were. (Last: it moves the challenger alias.)"""
    if not project.caps["has_kfp"]:
        pytest.skip(f"level {project.level} has no Kubeflow pipeline")
    status = project.python("-m", "dvc", "status").stdout
    assert "up to date" in status, f"the guide left the pipeline out of date: {status}"
    registered = (project.path / "reports" / "registered.json").read_bytes()
    before = registry_state(project)
    result = project.make("kfp-run-local")
    after = registry_state(project)
    (added,) = set(after["versions"]) - set(before["versions"])
    dvc = after["versions"][str(json.loads(registered)["version"])]
    kfp = after["versions"][added]
    assert kfp["metrics"] == dvc["metrics"]
    lineage = ("data_hash", "train_data_hash", "params_hash")
    assert {tag: kfp["tags"].get(tag) for tag in lineage} == {
        tag: dvc["tags"].get(tag) for tag in lineage
    }
    assert (project.path / "reports" / "registered.json").read_bytes() == registered
    if project.caps["has_promotion"]:  # a tie with what it equals
        verdict = json.loads((project.path / "build" / "kfp" / "promotion.json").read_text())
        assert (verdict["version"], verdict["promoted"]) == (added, False), verdict
        assert f"kfp: version {added}: not promoted" in result.stdout

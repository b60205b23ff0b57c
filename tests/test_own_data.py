"""The user's own data, not ours: a project made for a file nobody designed for the
template goes from `copier copy` to a served prediction with `make contract` and no
other edit, at the highest built level."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from conftest import Render
from support import (
    AWKWARD_TARGET,
    Project,
    ProjectEnv,
    awkward_table,
    git,
    installed,
    selected_levels,
    serving,
)

pytestmark = pytest.mark.slow

SOURCE = "data/external/loans.csv"


def own_data_level() -> list[int]:
    built = selected_levels(built_only=True)
    return [max(built)] if built and max(built) >= 1 else []


@pytest.fixture(scope="module", params=own_data_level(), ids=lambda level: f"level-{level}")
def project(request: pytest.FixtureRequest, render: Render, project_env: ProjectEnv) -> Project:
    """A project for the user's own file: rendered, the file put where the answer says,
    installed, `make contract` run (and nothing else edited), trained."""
    path = render(
        "own", maturity_level=request.param, dataset="own", data_source=SOURCE,
        target_column=AWKWARD_TARGET,
    )  # fmt: skip
    (path / SOURCE).parent.mkdir(parents=True, exist_ok=True)
    awkward_table().to_csv(path / SOURCE, index=False)
    project = installed(path, project_env)
    project.make("contract")
    project.make("data")
    project.make("train")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Contract and first training run")
    return project


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
        "Has Co-Signer": ("has_co_signer", "boolean", False),
    }
    dropped = {item["column"]: item["reason"] for item in contract["dropped"]}
    assert set(dropped) == {"Loan ID", "Branch"}
    assert "identifier" in dropped["Loan ID"] and "one value" in dropped["Branch"]


def test_the_pipeline_trained_on_it(project: Project) -> None:
    metrics = json.loads((project.path / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.85  # the labels follow from income and ownership
    snapshot = pd.read_csv(project.path / "data" / "raw" / "data.csv")
    assert list(snapshot.columns) == [
        "annual_income", "home_ownership", "yrs_since_phd", "has_co_signer", "loan_status"
    ]  # fmt: skip
    assert len(snapshot) == len(awkward_table())


def test_a_file_it_cannot_use_is_refused_and_the_contract_kept(project: Project) -> None:
    contract = (project.path / "data" / "contract.yaml").read_bytes()
    for variables, message in (
        ({"TARGET": "Loan Stat"}, "did you mean 'Loan Status'"),
        ({"SOURCE": "data/external/absent.csv"}, "no such file"),
    ):
        result = project.make("contract", check=False, **variables)
        assert result.returncode != 0 and message in result.stderr, result
        assert (project.path / "data" / "contract.yaml").read_bytes() == contract


def test_the_project_s_own_tests_pass_on_it(project: Project) -> None:
    result = project.make("test")
    assert " passed" in result.stdout and " failed" not in result.stdout


@pytest.fixture(scope="module")
def server(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(project, tmp_path_factory.mktemp("own-server") / "server.log") as running:
        yield running.url


def test_served_predictions_equal_the_batch_cli_s(
    project: Project, server: str, tmp_path: Path
) -> None:
    rows = awkward_table(rows=30, seed=99)
    renamed = {f["column"]: f["name"] for f in project.contract["features"]}
    rows = rows.loc[:, list(renamed)].rename(columns=renamed)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    project.make("predict", INPUT=str(tmp_path / "rows.csv"), OUTPUT=str(tmp_path / "out.csv"))
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


def test_bad_requests_get_a_422_that_says_what_is_allowed(project: Project, server: str) -> None:
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


def test_the_monitors_flag_exactly_the_shifted_features(project: Project, server: str) -> None:
    """Level 4 on the user's data: traffic with a flag set in every row and a number moved
    by three standard deviations is caught on those two features, and on no other."""
    if not project.caps["has_drift_detection"]:
        pytest.skip(f"level {project.level} has no monitors")
    sent = project.make(
        "simulate", URL=server, ROWS="400", SHIFT="has_co_signer=true annual_income=3"
    )
    assert "400 answered, 0 failed" in sent.stdout, sent.stdout
    project.make("monitor", RETRAIN="")
    verdict = json.loads((project.path / "reports" / "monitor" / "verdict.json").read_text())
    assert sorted(verdict["drift"]["drifted_features"]) == ["annual_income", "has_co_signer"]

"""The user's own data, not ours: a project made for a file nobody designed for the
template goes from `copier copy` to a served prediction with `make contract` and no
other edit, at the highest built level. As a user does it: docs/your-data.md's commands,
then the project's GUIDE.md, every command as written, in a plain shell with the
project's own .venv (see mlops_harness/guide.py)."""

from __future__ import annotations

import json
import re
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
from mlops_harness.ladder import selected_levels
from mlops_harness.paths import ROOT
from mlops_harness.processes import appended
from mlops_harness.projects import Project, open_project
from mlops_harness.servers import served_by, wait_until_serving

pytestmark = pytest.mark.slow

SOURCE = "data/external/loans.csv"
# The placeholders of docs/your-data.md's commands, and what stands for them here.
TEMPLATE_PLACEHOLDER = "/absolute/path/of/the/template"
FILE_PLACEHOLDER = "/wherever/loans.csv"


def own_data_level() -> list[int]:
    built = selected_levels(built_only=True)
    return [max(built)] if built and max(built) >= 1 else []


@dataclass
class OwnData:
    project: Project
    guide: Guide

    @property
    def url(self) -> str:
        return self.guide.url()


@pytest.fixture(scope="module", params=own_data_level(), ids=lambda level: f"level-{level}")
def own(
    request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnData]:
    """docs/your-data.md's commands (its two placeholders: the template, the user's file),
    which copy a project for the user's own file, then that project's guide: install,
    `make contract` (and nothing else edited), the pipeline, the service, the monitors."""
    scratch = tmp_path_factory.mktemp("own")
    users_file = scratch / "loans.csv"
    awkward_table().to_csv(users_file, index=False)
    docs = (ROOT / "docs" / "your-data.md").read_text(encoding="utf-8")
    docs = docs.replace(TEMPLATE_PLACEHOLDER, str(template)).replace(
        FILE_PLACEHOLDER, str(users_file)
    )
    level = request.param
    docs = docs.replace("maturity_level=4", f"maturity_level={level}")
    (scratch / "logs").mkdir()
    with guided(scratch, user_env(), scratch / "logs") as guide:
        guide.run(commands(docs))
        path = scratch / "my-project"
        assert guide.cwd == path
        project = open_project(path, UserShell(path))
        guide.run(commands((path / "GUIDE.md").read_text(encoding="utf-8")))
        yield OwnData(project, guide)


@pytest.fixture(scope="module")
def project(own: OwnData) -> Project:
    return own.project


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


def test_the_pipeline_trained_on_it(own: OwnData) -> None:
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


def test_a_file_it_cannot_use_is_refused_and_the_contract_kept(project: Project) -> None:
    contract = (project.path / "data" / "contract.yaml").read_bytes()
    for variables, message in (
        ({"TARGET": "Loan Stat"}, "did you mean 'Loan Status'"),
        ({"SOURCE": "data/external/absent.csv"}, "no such file"),
    ):
        result = project.make("contract", check=False, **variables)
        assert result.returncode != 0 and message in result.stderr, result
        assert (project.path / "data" / "contract.yaml").read_bytes() == contract


def test_the_project_s_own_tests_pass_on_it(own: OwnData) -> None:
    output = own.guide.outcome("make test").output
    assert " passed" in output and " failed" not in output


def test_predictions_for_rows_cut_from_the_file_keep_its_headers_and_id(
    own: OwnData, tmp_path: Path
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


def test_served_predictions_equal_the_batch_cli_s(
    project: Project, own: OwnData, tmp_path: Path
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


def test_bad_requests_get_a_422_that_says_what_is_allowed(project: Project, own: OwnData) -> None:
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


def monitored(project: Project, own: OwnData, **simulate: str) -> dict[str, Any]:
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


def test_the_user_s_own_rows_sent_again_move_no_feature(project: Project, own: OwnData) -> None:
    """The monitor does not cry wolf on unchanged traffic: the file's own rows, whose
    rates are float32 values (3.0999999046...), flag nothing."""
    verdict = monitored(project, own)
    assert verdict["drift"]["drifted_features"] == []


def test_the_monitors_flag_exactly_the_shifted_features(project: Project, own: OwnData) -> None:
    """Level 4 on the user's data: traffic with a flag set in every row and a number moved
    by one and a half standard deviations (within the contract's bounds, which the
    service holds requests to) is caught on those two features, and on no other."""
    verdict = monitored(project, own, SHIFT="has_co_signer=true annual_income=1.5")
    assert sorted(verdict["drift"]["drifted_features"]) == ["annual_income", "has_co_signer"]

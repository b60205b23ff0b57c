"""copier.yml: defaults derive from earlier answers; bad answers are refused, loudly,
and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from copier.errors import CopierAnswersInterrupt, UserMessageError

from mlops_harness.ladder import choices, ladder, questions
from mlops_harness.rendering import render_project

pytestmark = [pytest.mark.xdist_scope("test"), pytest.mark.level_independent]

BAD_ANSWERS = [
    ("project_name", "", "must start with a letter"),
    ("project_name", "9 lives", "must start with a letter"),
    ("project_name", 'Quote"d', "must start with a letter"),
    ("project_slug", "Has Capitals", "lowercase"),
    ("project_slug", "double--hyphen", "lowercase"),
    ("project_slug", "x" * 51, "at most 50"),
    ("package_name", "my-package", "lowercase letters, digits and underscores"),
    ("package_name", "import", "is a Python keyword"),
    ("package_name", "sklearn", "would shadow a module"),
    ("package_name", "a" * 31, "2 to 30"),
    ("description", "", "must not be empty"),
    ("description", "x" * 201, "200 characters"),
    ("author_name", "Ann <ann>", "without <"),
    ("author_email", "not-an-email", "is not an email address"),
    ("dvc_remote", "two words", "white space"),
    ("dvc_remote", "ftp://host/path", "scheme DVC does not know"),
    ("python_version", "2.7", "2.7"),
    ("maturity_level", 7, "7"),
    ("dataset", "mnist", "mnist"),
    ("model_libraries", ["catboost"], "catboost"),
]
OWN_DATA_ANSWERS = [
    ({"data_source": ""}, "must not be empty"),
    ({"data_source": "data/loans.xlsx"}, "is not a CSV or Parquet file"),
    ({"data_source": "bundled:iris.csv"}, "names a shipped dataset"),
    ({"target_column": " "}, "must not be empty"),
    ({"target_column": 'say "y"'}, "without double quotes"),
]


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    BAD_ANSWERS,
    ids=[f"{question}={str(answer)[:12]!r}" for question, answer, _ in BAD_ANSWERS],
)
def test_a_bad_answer_is_refused_with_a_message_and_writes_nothing(
    template: Path, tmp_path: Path, question: str, answer: object, message: str
) -> None:
    destination = tmp_path / "project"
    with pytest.raises((ValueError, UserMessageError, CopierAnswersInterrupt)) as refusal:
        render_project(template, destination, **{question: answer})
    assert message in str(refusal.value)
    assert not destination.exists()


@pytest.mark.parametrize(("answers", "message"), OWN_DATA_ANSWERS, ids=lambda v: str(v)[:24])
def test_a_bad_answer_about_the_user_s_file_is_refused(
    template: Path, tmp_path: Path, answers: dict[str, str], message: str
) -> None:
    with pytest.raises((ValueError, UserMessageError)) as refusal:
        render_project(template, tmp_path / "project", dataset="own", **answers)
    assert message in str(refusal.value)
    assert not (tmp_path / "project").exists()


def test_a_bad_tracking_uri_is_refused_where_the_level_asks_for_it(
    template: Path, tmp_path: Path
) -> None:
    tracking_level = next(cap.level for cap in ladder().CAPABILITIES if cap.name == "has_tracking")
    with pytest.raises(ValueError, match="is not a tracking URI"):
        render_project(
            template,
            tmp_path / "project",
            maturity_level=tracking_level,
            mlflow_tracking_uri="mlruns",
        )
    assert not (tmp_path / "project").exists()


def test_defaults_derive_from_earlier_answers(render: object) -> None:
    project = render("derived", project_name="Fraud Radar 2")  # type: ignore[operator]
    answers = (project / ".copier-answers.yml").read_text()
    assert "project_slug: fraud-radar-2" in answers
    assert "package_name: fraud_radar_2" in answers
    assert (project / "src" / "fraud_radar_2" / "__init__.py").is_file()


def test_the_options_match_the_tables() -> None:
    table = ladder()
    assert choices("maturity_level") == [level.number for level in table.LEVELS]
    assert choices("dataset") == [dataset.name for dataset in table.DATASETS] + [table.OWN_DATA]
    assert set(choices("python_version")) == set(table.BASE_IMAGES)
    labels = list(questions()["maturity_level"]["choices"])
    for label, level in zip(labels, table.LEVELS, strict=True):
        assert label.startswith(f"{level.number} - {level.name}:")
        assert ("not built yet" in label or "in progress" in label) == (not level.built), label


def test_every_question_says_what_it_is_for() -> None:
    for name, spec in questions().items():
        if name.startswith("_"):
            continue
        assert spec.get("help"), f"{name} has no help text"
        assert "default" in spec, f"{name} has no default"
        if spec.get("type") == "str" and "choices" not in spec:
            assert spec.get("validator"), f"free-text {name} has no validator"

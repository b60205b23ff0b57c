"""`make maturity`: a generated project says where it stands on the ladder, checks that
its level's capabilities are in place, and names the next level and the command to climb.
Here on every level's fresh render; after training in test_execute.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlops_harness.ladder import ladder
from mlops_harness.projects import assessed

pytestmark = pytest.mark.xdist_scope("test")

# What a fresh render cannot have yet: each needs `make install` (the lock CI installs
# from), `make data` or `make train` first.
NEEDS_A_RUN = {
    "has_ci",
    "has_data_versioning",
    "has_serving",
    "has_pipeline",
    "has_tracking",
    "has_registry",
    "has_promotion",
    "has_model_card",
    "has_drift_detection",
}


def test_a_fresh_render_knows_its_level_and_what_it_still_needs(
    rendered: tuple[int, Path],
) -> None:
    level, project = rendered
    result = json.loads(assessed(project, "--json").stdout)
    table = ladder()
    assert result["level"]["number"] == level
    assert result["level"]["name"] == table.LEVELS[level].name
    owned = [cap.name for cap in table.CAPABILITIES if cap.level <= level]
    assert [found["capability"] for found in result["capabilities"]] == owned
    todo = {found["capability"] for found in result["capabilities"] if not found["ok"]}
    assert todo == NEEDS_A_RUN & set(owned), result["capabilities"]
    if level + 1 < len(table.LEVELS):
        following = result["next"]
        assert following["number"] == level + 1
        added = [cap.summary for cap in table.CAPABILITIES if cap.level == level + 1]
        assert following["adds"] == added
        assert following["command"] == (
            f"copier update --trust --defaults --data maturity_level={level + 1}"
        )
    else:
        assert result["next"] is None
    # Whose each module is: the user's stages at the package's top, the template's
    # machinery in its own folders, as each module's ownership line says.
    owners, package = result["layout"], "src/tabular_classifier"
    stages = {"__init__", "ingest", "features", "train", "evaluate", "predict", "routes"}
    assert {Path(path).stem for path in owners["yours"]} == stages
    assert all(Path(path).parent.as_posix() == package for path in owners["yours"])
    folders = {Path(path).relative_to(package).parts[0] for path in owners["template"]}
    kfp = any(cap.name == "has_kfp" and cap.level <= level for cap in table.CAPABILITIES)
    assert folders == {"mlops", "serving", *(["pipelines"] if kfp else [])}


def test_the_terminal_report_names_the_level_and_the_climb(rendered: tuple[int, Path]) -> None:
    level, project = rendered
    text = assessed(project).stdout
    assert f"MLOps maturity level {level}, {ladder().LEVELS[level].name}" in text.splitlines()[0]
    if level + 1 < len(ladder().LEVELS):
        assert f"maturity_level={level + 1}" in text
    else:
        assert "top of the ladder" in text
    assert all(len(line) < 160 for line in text.splitlines()), "lines a terminal can hold"


def test_a_deleted_file_is_reported_missing(rendered: tuple[int, Path], tmp_path: Path) -> None:
    _, project = rendered
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".git", ".venv"))
    (copy / "params.yaml").unlink()
    result = json.loads(assessed(copy, "--json").stdout)
    files = next(f for f in result["capabilities"] if f["capability"] == "has_project_files")
    assert not files["ok"] and "params.yaml" in files["detail"]


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (".copier-answers.yml", None, ".copier-answers.yml"),
        (".copier-answers.yml", "project_slug: x\n", "no maturity_level"),
        (".copier-answers.yml", "maturity_level: 9\n", "level 9"),
        (".ladder.json", "{not json", ".ladder.json"),
        (".ladder.json", '{"levels": []}', "no levels and capabilities"),
    ],
)
def test_an_unreadable_answers_file_or_ladder_is_a_clear_error(
    rendered: tuple[int, Path], tmp_path: Path, file: str, content: str | None, message: str
) -> None:
    _, project = rendered
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".git", ".venv"))
    if content is None:
        (copy / file).unlink()
    else:
        (copy / file).write_text(content)
    result = assessed(copy, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr

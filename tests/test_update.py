"""Climbing the ladder with `copier update`, the way Copier tests itself: a committed
project whose user edited generated files, updated to a higher level."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Render
from copier import run_update
from support import (
    AWKWARD_TARGET,
    ProjectEnv,
    awkward_table,
    git,
    ladder,
    open_project,
    rendered_files,
    selected_levels,
)

pytestmark = pytest.mark.slow

CONFLICT = re.compile(r"^(<{7}|>{7}|={7})( |$)", re.M)


def climbs() -> list[tuple[int, int]]:
    """Every step up to a built level, and the jump from 0 to the highest one."""
    built = selected_levels(built_only=True)
    steps = {(high - 1, high) for high in built if high > 0}
    if built and max(built) > 1:
        steps.add((0, max(built)))
    return sorted(steps)


def update(project: Path, **answers: object) -> None:
    run_update(
        project,
        data=answers,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        skip_answered=True,
    )


def conflicted(project: Path) -> list[str]:
    found = [
        name
        for name in rendered_files(project)
        if not name.endswith((".joblib", ".parquet"))
        and CONFLICT.search((project / name).read_text(encoding="utf-8", errors="replace"))
    ]
    unmerged = [
        line
        for line in git(project, "status", "--porcelain").stdout.splitlines()
        if line[:2] in {"UU", "AA", "DU", "UD"}
    ]
    return found + unmerged + [name for name in rendered_files(project) if name.endswith(".rej")]


@pytest.mark.parametrize(("low", "high"), climbs(), ids=lambda level: f"level-{level}")
def test_climbing_keeps_edits_and_leaves_a_working_project(
    render: Render, project_env: ProjectEnv, low: int, high: int
) -> None:
    path = render(f"climb{low}{high}", maturity_level=low)
    project = open_project(path, project_env)
    package_dir = path / "src" / project.package
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    own_data = (low, high) == (1, 2)  # this user swapped the bundled data for their own
    if own_data:
        project.make("install")
        (path / "data" / "external").mkdir(parents=True)
        awkward_table().to_csv(path / "data" / "external" / "loans.csv", index=False)
        project.make("contract", SOURCE="data/external/loans.csv", TARGET=AWKWARD_TARGET)
    contract = (path / "data" / "contract.yaml").read_text()
    project.make("data")  # the user versions the raw snapshot before climbing
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Version the raw data")

    # The user's own edits to generated files: one the update also changes, one it does not.
    params = path / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 200", "n_estimators: 150"))
    features = package_dir / "features.py"
    features.write_text(
        features.read_text()
        + "\n\ndef class_balance(frame: pd.DataFrame, target: str) -> pd.Series:\n"
        + '    """Share of each class: added by the user."""\n'
        + "    return frame[target].value_counts(normalize=True)\n"
    )
    git(path, "commit", "--quiet", "--all", "--message", "User edits")

    update(path, maturity_level=high)

    assert not conflicted(path), conflicted(path)
    assert "n_estimators: 150" in params.read_text()
    assert "def class_balance" in features.read_text()
    assert (path / "data" / "contract.yaml").read_text() == contract, "the contract changed"
    climbed = open_project(path, project_env)
    assert climbed.level == high
    files = rendered_files(path)
    for cap in ladder().CAPABILITIES:
        if low < cap.level <= high:
            for pattern in cap.paths:
                expected = pattern.format(package=project.package).replace("*", "")
                assert any(name.startswith(expected) for name in files), (cap.name, pattern)

    climbed.make("install")
    climbed.make("data")
    climbed.make("train")
    if own_data:
        assert "loan_status" in (path / "data" / "raw" / "data.csv").read_text().splitlines()[0]
    if climbed.caps["has_tests"]:
        climbed.make("test")
    if climbed.caps["has_precommit"]:
        git(path, "add", "--all")
        climbed.make("lint")


def test_update_refuses_a_dirty_tree_and_changes_nothing(render: Render) -> None:
    path = render("dirty", maturity_level=0)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    readme = path / "README.md"
    readme.write_text(readme.read_text() + "\nwork in progress\n")
    before = {name: (path / name).read_bytes() for name in rendered_files(path)}
    with pytest.raises(Exception, match=r"(?i)dirty"):
        update(path, maturity_level=1)
    assert {name: (path / name).read_bytes() for name in rendered_files(path)} == before


def test_an_update_without_changes_changes_nothing(render: Render) -> None:
    """Tasks are gated and idempotent: re-applying the same answers is a no-op."""
    built = selected_levels(built_only=True)
    if not built:
        pytest.skip("no built level among $LEVELS")
    level = max(built)
    path = render("noop", maturity_level=level)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    update(path)
    assert git(path, "status", "--porcelain").stdout == ""

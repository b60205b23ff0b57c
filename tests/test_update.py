"""Climbing the ladder with `copier update`, the way Copier tests itself: a committed
project whose user edited generated files, updated to a higher level."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mlops_harness.data import AWKWARD_TARGET, awkward_table
from mlops_harness.edits import (
    CONFLICT,
    OWN_COMMENT,
    OWN_MODULE,
    OWN_README,
    OWN_TARGET,
    append,
    edit,
)
from mlops_harness.environments import ProjectEnv
from mlops_harness.ladder import default_provider, ladder, selected_levels
from mlops_harness.locks import forced_moves, locked_versions
from mlops_harness.processes import git
from mlops_harness.projects import Project, open_project
from mlops_harness.rendering import Render, rendered_files, update_project

pytestmark = [pytest.mark.slow, pytest.mark.xdist_scope("test")]

# The level that adds promotion and continuous delivery. Climbs to it and above have their
# own test (test_climbing_to_a_deploying_level), which executes only the likely one.
DELIVERY_LEVEL = next(cap.level for cap in ladder().CAPABILITIES if cap.name == "has_cd")


def climbs() -> list[tuple[int, int]]:
    """Every step up to a built level below DELIVERY_LEVEL (executed: data and training;
    the project's tests are the fresh render's), and the jump from 0 to the highest built
    one (installed and linted: the climbs to deploying levels train)."""
    built = selected_levels(built_only=True)
    steps = {(high - 1, high) for high in built if 0 < high < DELIVERY_LEVEL}
    if built and max(built) > 1:
        steps.add((0, max(built)))
    return sorted(steps)


def climbs_to_deploying_levels() -> list[tuple[int, int]]:
    """To each built level from DELIVERY_LEVEL up, from the level just below (the likely
    climb) and from level 0 (the longest), but the jumps climbs() makes already. (The
    jumps between, 1->3, 1->4 and 2->4, merge the same files and were cut for time.)"""
    built = selected_levels(built_only=True)
    return [
        (low, high)
        for high in built
        if high >= DELIVERY_LEVEL
        for low in sorted({0, high - 1})
        if (low, high) not in climbs()
    ]


def assert_capabilities_arrived(climbed: Project, low: int) -> None:
    """Every file of every capability above ``low``, up to the climbed level, is there."""
    files = rendered_files(climbed.path)
    for cap in ladder().CAPABILITIES:
        if low < cap.level <= climbed.level:
            for pattern in cap.files(default_provider()):
                expected = pattern.format(package=climbed.package).replace("*", "")
                assert any(name.startswith(expected) for name in files), (cap.name, pattern)


def conflicted(project: Path) -> list[str]:
    found = [
        name
        for name in rendered_files(project)
        if not name.endswith((".skops", ".parquet"))
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
        (path / "data" / "external").mkdir(parents=True, exist_ok=True)  # rendered, git-ignored
        awkward_table().to_csv(path / "data" / "external" / "loans.csv", index=False)
        project.make("contract", SOURCE="data/external/loans.csv", TARGET=AWKWARD_TARGET)
    contract = (path / "data" / "contract.yaml").read_text()
    project.make("data")  # the user versions the raw snapshot before climbing
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Version the raw data")

    # The user's own edits to generated files: one the update also changes, one it does not;
    # the README under its title, and a Makefile target of their own.
    params = path / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 200", "n_estimators: 150"))
    readme = edit(path / "README.md", "\n\n", f"\n{OWN_README}\n\n")
    with (path / "Makefile").open("a", encoding="utf-8") as makefile:
        makefile.write(OWN_TARGET)
    features = package_dir / "features.py"
    features.write_text(
        features.read_text()
        + "\n\ndef class_balance(frame: pd.DataFrame, target: str) -> pd.Series:\n"
        + '    """Share of each class: added by the user."""\n'
        + "    return frame[target].value_counts(normalize=True)\n"
    )
    git(path, "commit", "--quiet", "--all", "--message", "User edits")

    update_project(path, maturity_level=high)

    assert not conflicted(path), conflicted(path)
    assert "n_estimators: 150" in params.read_text()
    assert readme in (path / "README.md").read_text()
    assert OWN_TARGET in (path / "Makefile").read_text()
    assert f"maturity level **{high}:" in (path / "GUIDE.md").read_text(), "the guide is stale"
    assert "def class_balance" in features.read_text()
    assert (path / "data" / "contract.yaml").read_text() == contract, "the contract changed"
    climbed = open_project(path, project_env)
    assert climbed.level == high
    assert_capabilities_arrived(climbed, low)

    locked = locked_versions(path) if own_data else {}  # this user's lock, committed
    climbed.make("install")
    if own_data:  # the climb re-locks what the new level adds, and moves nothing else
        relocked = locked_versions(path)
        moved = {name: (v, relocked[name]) for name, v in locked.items() if relocked.get(name) != v}
        # a new level's requirement may rule an old pin out
        forced = forced_moves(path, climbed.tools.python, moved)
        unforced = {name: versions for name, versions in moved.items() if name not in forced}
        assert not unforced, f"the climb's install changed locked versions: {unforced} ({forced})"
        assert set(relocked) > set(locked)
    if high < DELIVERY_LEVEL:  # a jump higher is trained by the climbs to deploying levels
        climbed.make("data")
        climbed.make("train")
    if own_data:
        assert "loan_status" in (path / "data" / "raw" / "data.csv").read_text().splitlines()[0]
    # The climbed project's own tests are the fresh render's (test_execute runs those at
    # every level, and test_release checks an update is the render plus the user's edits).
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
        update_project(path, maturity_level=1)
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
    update_project(path)
    assert git(path, "status", "--porcelain").stdout == ""


def edit_as_a_user(project: Project) -> dict[str, list[str]]:
    """A user's own edits before climbing to DELIVERY_LEVEL (the climb changes
    features.py, params.yaml and the Makefile too, elsewhere in each file): a comment at
    the end of a stage module, a comment and changed values in params.yaml, a Makefile
    target and a module of the user's own (costs.py), committed. Returns the text each
    edited file must still hold."""
    path, package = project.path, project.package
    features, params, own = f"src/{package}/features.py", "params.yaml", f"src/{package}/costs.py"
    kept = {
        # At the end of a stage module, below the code that every level changes.
        features: [append(path / features, OWN_COMMENT)],
        params: [
            edit(
                path / params,
                "  n_estimators: 200",
                "  # Ours: fewer trees answer faster, at no loss on our data.\n  n_estimators: 150",
            )
        ],
        "Makefile": [OWN_TARGET],
        "README.md": [edit(path / "README.md", "\n\n", f"\n{OWN_README}\n\n")],
    }
    if project.caps["has_model_gate"]:  # the gate's section, which the climb extends
        kept[params].append(edit(path / params, "min_gain: 0.05", "min_gain: 0.1"))
    with (path / "Makefile").open("a", encoding="utf-8") as makefile:
        makefile.write(OWN_TARGET)
    (path / own).write_text(OWN_MODULE, encoding="utf-8")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "User edits")
    return kept


# The files the delivery level brings, besides those its capabilities claim (checked too).
DELIVERY_FILES = (
    "src/{package}/mlops/promote.py",
    "src/{package}/mlops/card.py",
    "src/{package}/mlops/profile.py",
    "src/{package}/mlops/export.py",
    "deploy/kubernetes/",
    ".github/workflows/deploy.yml",
)


@pytest.mark.parametrize(
    ("low", "high"), climbs_to_deploying_levels(), ids=lambda level: f"level-{level}"
)
def test_climbing_to_a_deploying_level(
    render: Render, project_env: ProjectEnv, low: int, high: int
) -> None:
    """From a lower level to one that deploys (DELIVERY_LEVEL and up) on a committed,
    user-edited project: the edits stay, nothing conflicts, the new files arrive and the
    project lints. The climb onto the first deploying level, from the level just below,
    also trains and promotes (the climbed level 4 trains in test_release, updated from
    the newest release; test_execute runs the project's own tests on each level's fresh
    render)."""
    executed = low == high - 1 == DELIVERY_LEVEL - 1
    path = render(f"deliver{low}{high}", maturity_level=low)
    project = open_project(path, project_env)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    if executed:  # the user ran the data stages, and versioned them, before climbing
        project.make("install")
        project.make("data")
        git(path, "add", "--all")
        git(path, "commit", "--quiet", "--message", "Version the raw data")
    contract = (path / "data" / "contract.yaml").read_text()
    kept = edit_as_a_user(project)

    update_project(path, maturity_level=high)

    assert not conflicted(path), conflicted(path)
    for name, texts in kept.items():
        text = (path / name).read_text(encoding="utf-8")
        for expected in texts:
            assert expected in text, f"{name} lost the user's {expected!r}"
    assert (path / f"src/{project.package}/costs.py").read_text() == OWN_MODULE, "costs.py"
    assert (path / "data" / "contract.yaml").read_text() == contract, "the contract changed"
    climbed = open_project(path, project_env)
    assert climbed.level == high
    assert_capabilities_arrived(climbed, low)
    files = rendered_files(path)
    for expected in DELIVERY_FILES:
        expected = expected.format(package=project.package)
        assert any(name.startswith(expected) for name in files), expected

    climbed.make("install")
    assert climbed.make("--silent", "where").stdout.strip() == "data/raw/data.csv"
    if executed:
        climbed.make("train")
        promotion = json.loads((path / "reports" / "promotion.json").read_text())
        assert promotion["promoted"] is True, promotion
        assert (path / "reports" / "model_card.md").is_file()
    git(path, "add", "--all")
    climbed.make("lint")


def with_own_paragraphs(project: Path) -> list[str]:
    """A paragraph at the end of every Python module's docstring (one of more than one
    line), committed; the files changed."""
    edited = []
    for module in sorted(project.rglob("*.py")):
        text = module.read_text(encoding="utf-8")
        first = next(iter(ast.parse(text).body), None)
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
            continue  # no module docstring
        lines = text.splitlines(keepends=True)
        closing = (first.end_lineno or 1) - 1  # the index of the docstring's last line
        if lines[closing].strip() != '"""':
            continue  # a one-line docstring
        lines.insert(closing, "\nA paragraph of our own.\n")
        module.write_text("".join(lines), encoding="utf-8")
        edited.append(module.relative_to(project).as_posix())
    git(project, "commit", "--quiet", "--all", "--message", "Our own paragraphs")
    return edited


@pytest.mark.parametrize(
    "high",
    [high for high in selected_levels(built_only=True) if high >= DELIVERY_LEVEL],
    ids=lambda level: f"level-{level}",
)
def test_a_paragraph_added_to_any_module_docstring_survives_the_climb(
    render: Render, high: int
) -> None:
    """The most natural edit of a generated module, on the likely climb to a level that
    deploys (from the level below: every module it changes exists there)."""
    path = render(f"paragraphs{high}", maturity_level=high - 1)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    edited = with_own_paragraphs(path)
    assert len(edited) > 10, edited
    update_project(path, maturity_level=high)
    assert not conflicted(path), conflicted(path)
    for name in edited:
        assert "\nA paragraph of our own.\n" in (path / name).read_text(), name

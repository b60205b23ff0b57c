"""The update users run most: a project made from a release takes the current template
at the same level (`copier update`, answers unchanged), in the style of Copier's own
update tests. The user's edits stay, the template's changes arrive (every file the user
did not edit becomes what a fresh render of the current template holds), no conflict
marker is left, and the project's own checks pass.

The releases are the ones releases.yml records (tags do not travel with a clone of main;
the record does): the template under test is a clone of this repository's history with
the record's tags made in it by scripts/release_tags.py, as `make release-tags` makes
them, and the working tree committed on top. Every recorded release whose template is
not the one under test is updated from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_harness.edits import CONFLICT, OWN_COMMENT, OWN_README, OWN_TARGET, append, edit
from mlops_harness.environments import ProjectEnv
from mlops_harness.paths import ROOT
from mlops_harness.processes import GIT_ENV, git, run
from mlops_harness.projects import installed
from mlops_harness.releases import Release, read_record
from mlops_harness.rendering import render_project, rendered_files, update_project

pytestmark = [pytest.mark.slow, pytest.mark.level_independent]

# The levels updated from a release (see updates): the manual process, and everything
# (level 4's files include the pipeline's; level 2 alone was cut for time).
LEVELS = (0, 4)


# What makes a project: a release whose copy of these equals the working tree's is the
# template under test itself, not an earlier release.
TEMPLATE_PATHS = ("copier.yml", "extensions", "template")


def earlier_releases() -> list[Release]:
    """The recorded releases whose template differs from the working tree's (a release
    made from this very tree is not an earlier one). A release whose commit this clone
    lacks counts as earlier: its test then fails, naming the commit."""
    return [
        release
        for release in read_record(ROOT / "releases.yml")
        if subprocess.run(
            ["git", "diff", "--quiet", release.commit, "--", *TEMPLATE_PATHS],
            cwd=ROOT,
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ]


def template_with_history(destination: Path) -> Path:
    """This repository's history, with the record's release tags made in it (this clone has
    none of its own), and the working tree as it is (committed or not) as one more commit
    on top: the template a user updates to."""
    git(ROOT.parent, "clone", "--quiet", "--no-local", str(ROOT), str(destination))
    tags = [sys.executable, str(ROOT / "scripts" / "release_tags.py"), "--repo", str(destination)]
    tags += ["--record", str(ROOT / "releases.yml")]
    made = run(tags, destination, env={**os.environ, **GIT_ENV})
    recorded = read_record(ROOT / "releases.yml")
    assert all(f"v{r.version}: made" in made.stdout for r in recorded), made.stdout
    git(destination, "rm", "-r", "--quiet", "--", ".")
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--allow-empty", "--message", "The commit under test")
    return destination


def copy(template: Path, destination: Path, ref: str, level: int) -> Path:
    return render_project(template, destination, ref=ref, maturity_level=level)


def test_there_is_an_earlier_release_to_update_from() -> None:
    """Never a skip: a clone of main has the record, the record a release, and the clone
    its commit (a shallow one lacks it: .ci/run fetches the history)."""
    assert earlier_releases(), "releases.yml records no release before this template"
    for release in read_record(ROOT / "releases.yml"):
        found = git(ROOT, "cat-file", "-e", f"{release.commit}^{{commit}}", check=False)
        assert found.returncode == 0, f"v{release.version}: this clone lacks {release.commit}"


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template a user updates to, made once for every release's test."""
    return template_with_history(tmp_path_factory.mktemp("release") / "template")


def updates() -> list[tuple[str, int]]:
    """The updates tested: from each earlier release, at the levels 0 (the manual
    process) and 4 (everything)."""
    return [(release.version, level) for release in earlier_releases() for level in LEVELS]


@pytest.mark.parametrize(("version", "level"), updates(), ids=lambda x: str(x))
def test_a_project_from_a_release_updates_to_the_current_template(
    version: str, level: int, current: Path, tmp_path: Path, project_env: ProjectEnv
) -> None:
    release, template = f"v{version}", current
    path = copy(template, tmp_path / "project", release, level)
    copied = yaml.safe_load((path / ".copier-answers.yml").read_text())
    assert copied["_commit"] == release, copied["_commit"]
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", f"Generate project from {release}")

    # The user's edits: under the README's title, a target of their own, a parameter, a
    # comment at the end of two stage modules, and one at the end of a module of the
    # template's that the current template moved (config.py, under mlops/ since 0.3.0).
    package = str(copied["package_name"])
    stages = [f"src/{package}/features.py", f"src/{package}/train.py"]
    moved = (f"src/{package}/config.py", f"src/{package}/mlops/config.py")
    old_moved = (path / moved[0]).is_file()
    readme = edit(path / "README.md", "\n\n", f"\n{OWN_README}\n\n")
    with (path / "Makefile").open("a", encoding="utf-8") as makefile:
        makefile.write(OWN_TARGET)
    params = edit(path / "params.yaml", "  n_estimators: 200", "  n_estimators: 150")
    appended = {name: append(path / name, OWN_COMMENT) for name in stages}
    moved_edit = append(path / moved[not old_moved], OWN_COMMENT)
    git(path, "commit", "--quiet", "--all", "--message", "User edits")

    update_project(path, ref="HEAD")

    files = rendered_files(path)
    marked = [name for name in files if CONFLICT.search((path / name).read_text(errors="replace"))]
    assert not marked, marked
    assert not [name for name in files if name.endswith(".rej")]
    assert readme in (path / "README.md").read_text()
    assert OWN_TARGET in (path / "Makefile").read_text()
    assert params in (path / "params.yaml").read_text()
    for name, text in appended.items():
        assert text in (path / name).read_text(), f"the update lost the edit to {name}"
    # The moved module's edit is merged into it at its new path; the old path is gone.
    assert moved_edit in (path / moved[1]).read_text(), "the update lost the moved module's edit"
    assert not (path / moved[0]).exists()
    # Every file the user did not touch is now the current template's.
    fresh = copy(template, tmp_path / "fresh", "HEAD", level)
    edited = {"README.md", "Makefile", "params.yaml", ".copier-answers.yml", moved[1], *stages}
    expected = rendered_files(fresh)
    assert expected <= files, sorted(expected - files)
    assert files <= expected, f"the update left files behind: {sorted(files - expected)}"
    stale = [
        name
        for name in sorted(expected - edited)
        if (fresh / name).read_bytes() != (path / name).read_bytes()
    ]
    assert not stale, f"the update did not bring the current template's {stale}"
    # Copier records `git describe`: <newest tag>-<commits since>-g<hash> of the commit used
    # (the newest tag may be newer than ``release``, when the head itself is released).
    answers = yaml.safe_load((path / ".copier-answers.yml").read_text())
    head = git(template, "rev-parse", "HEAD").stdout.strip()
    newest = git(template, "describe", "--tags", "--abbrev=0").stdout.strip()
    assert answers["_commit"].startswith(f"{newest}-"), answers["_commit"]
    assert head.startswith(answers["_commit"].rsplit("-g", 1)[-1]), answers["_commit"]

    # The updated project works. It is byte for byte a fresh render plus the user's edits
    # (above), and the suite runs every fresh render's own tests (test_execute): here its
    # lint on the merged files, then the pipeline on the edited parameters (the GUIDE's
    # quick start), from the newest release, and at level 0 (seconds) from every one.
    project = installed(path, project_env)
    git(path, "add", "--all")
    if project.caps["has_precommit"]:
        project.make("lint")
    if version == earlier_releases()[-1].version or level == 0:
        project.make("data")
        project.make("train")

"""The update users run most: a project made from the previous release takes the current
template at the same level (`copier update`, answers unchanged), in the style of Copier's
own update tests. The user's edits stay, the template's changes arrive (every file the
user did not edit becomes what a fresh render of the current template holds), no
conflict marker is left, and the project's own checks pass.

"The previous release" is the newest tag of this repository whose template is not the one
under test; the current template is this working tree, committed on top of the history."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import (
    ROOT,
    ProjectEnv,
    git,
    installed,
    render_project,
    rendered_files,
    update_project,
)
from test_update import CONFLICT, OWN_README, OWN_TARGET, edit

pytestmark = pytest.mark.slow

LEVEL = 1  # tested, linted and checked in CI: the first level whose project checks itself


# What makes a project: a release whose copy of these equals the working tree's is the
# template under test itself, and no previous release.
TEMPLATE_PATHS = ("copier.yml", "extensions", "template")


def previous_release() -> str | None:
    """The newest release tag before the commit under test whose template differs from the
    working tree's (when the head is itself tagged, the release before it), or None in a
    clone without tags (a shallow CI checkout: fetch them with the history)."""
    tags = git(ROOT, "tag", "--list", "v[0-9]*", "--sort=-v:refname", "--merged", "HEAD")
    for tag in tags.stdout.split():
        same = subprocess.run(
            ["git", "diff", "--quiet", tag, "--", *TEMPLATE_PATHS], cwd=ROOT, check=False
        )
        if same.returncode == 1:
            return tag
    return None


def template_with_history(destination: Path) -> Path:
    """This repository's history (and tags), with the working tree as it is (committed or
    not) as one more commit on top: the template a user updates to."""
    git(ROOT.parent, "clone", "--quiet", "--no-local", str(ROOT), str(destination))
    git(destination, "rm", "-r", "--quiet", "--", ".")
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--allow-empty", "--message", "The commit under test")
    return destination


def copy(template: Path, destination: Path, ref: str) -> Path:
    return render_project(template, destination, ref=ref, maturity_level=LEVEL)


def test_a_project_from_the_previous_release_updates_to_the_current_template(
    tmp_path: Path, project_env: ProjectEnv
) -> None:
    release = previous_release()
    if release is None:
        pytest.skip("no earlier release in this checkout (clone with tags: fetch-depth: 0)")
    template = template_with_history(tmp_path / "template")
    path = copy(template, tmp_path / "project", release)
    copied = yaml.safe_load((path / ".copier-answers.yml").read_text())
    assert copied["_commit"] == release, copied["_commit"]
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", f"Generate project from {release}")

    # The user's edits: under the README's title, a target of their own, a parameter.
    readme = edit(path / "README.md", "\n\n", f"\n{OWN_README}\n\n")
    with (path / "Makefile").open("a", encoding="utf-8") as makefile:
        makefile.write(OWN_TARGET)
    params = edit(path / "params.yaml", "  n_estimators: 200", "  n_estimators: 150")
    git(path, "commit", "--quiet", "--all", "--message", "User edits")

    update_project(path, ref="HEAD")

    files = rendered_files(path)
    marked = [name for name in files if CONFLICT.search((path / name).read_text(errors="replace"))]
    assert not marked, marked
    assert not [name for name in files if name.endswith(".rej")]
    assert readme in (path / "README.md").read_text()
    assert OWN_TARGET in (path / "Makefile").read_text()
    assert params in (path / "params.yaml").read_text()
    # Every file the user did not touch is now the current template's.
    fresh = copy(template, tmp_path / "fresh", "HEAD")
    edited = {"README.md", "Makefile", "params.yaml", ".copier-answers.yml"}
    expected = rendered_files(fresh)
    assert expected <= files, sorted(expected - files)
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

    project = installed(path, project_env)
    git(path, "add", "--all")
    project.make("lint")
    project.make("test")

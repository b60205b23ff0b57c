"""Rendering and updating projects with Copier: the template as it is in this working
tree (a snapshot), Copier's copy of it, and `copier update`. The one way the tests, the
scripts and the docs hook call Copier."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from copier import run_copy, run_update

from mlops_harness.paths import ROOT
from mlops_harness.processes import git

# The suite's `render` fixture (tests/conftest.py): the template rendered with the
# defaults plus the answers given, into a new folder named after its first argument.
Render = Callable[..., Path]


SNAPSHOT_TAG = "v0.0.0"  # a snapshot's one tag (Copier copies from the newest tag)


def snapshot_template(destination: Path) -> Path:
    """The template as it is in this working tree (committed or not), as a fresh git
    repository with one tagged commit: what Copier needs to copy and to update from."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:  # not a git checkout (an unpacked archive): take everything but caches
        names = [
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if path.is_file() and not {".git", ".venv", ".cache"} & set(path.parts)
        ]
    for name in names:
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(destination, "init", "--quiet", "--initial-branch=main")
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--message", "Template under test")
    git(destination, "tag", SNAPSHOT_TAG)
    return destination


def rendered_files(project: Path) -> set[str]:
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


PICTURES = (".png",)  # the template's only files that are not text


def text_files(project: Path) -> set[str]:
    """The rendered files but the pictures: every one is UTF-8 text."""
    return {name for name in rendered_files(project) if not name.endswith(PICTURES)}


def render_project(
    template: Path, destination: Path, ref: str = SNAPSHOT_TAG, **answers: Any
) -> Path:
    """Copier's copy of ``template`` at ``ref`` (by default a snapshot: see
    snapshot_template) into ``destination``, on the defaults plus ``answers``, trusted."""
    run_copy(
        str(template),
        destination,
        data=answers,
        defaults=True,
        unsafe=True,
        quiet=True,
        vcs_ref=ref,
    )
    return destination


def update_project(project: Path, ref: str | None = None, **answers: Any) -> None:
    """`copier update --trust --defaults [--vcs-ref ref] --data ...` in ``project``: the
    template's newest release (or ``ref``), with ``answers`` changed and the rest kept."""
    run_update(
        project,
        data=answers,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        skip_answered=True,
        vcs_ref=ref,
    )

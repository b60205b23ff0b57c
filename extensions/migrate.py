"""Copier's `_migrations` for files the template moved: `copier update` keeps a user's
edits to a module the template moved, instead of deleting them with the old path.

Copier removes a file the new template no longer has, edited or not, and renders the
moved module afresh at its new path: the user's edits would be gone without a word.
So, on every update (Copier runs this with its own Python, in the project):

- ``before``: each moved module still at its old path is compared with the old
  template's render of it (the project's recorded answers, at its recorded commit).
  An edited one is kept aside, with that render as the merge base, in the project's
  git directory.
- ``after``: each one kept aside is merged three ways into the module at its new path
  (``git merge-file``): the user's edits land there, and where they clash with the
  template's own changes, conflict markers show both, as Copier shows any conflict.
  Each is reported on standard error. A module the template dropped, or split into a
  package of several, is restored at its old path, and reported.

Usage (in the project, with Copier importable; copier.yml passes the template's local
clone, which holds its history, and the answers file's path):

    python migrate.py before|after TEMPLATE ANSWERS_FILE"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

# Every move, old path to new path (``{package}`` is the package's name). 0.3.0 put the
# template's machinery under mlops/, out of the stages that are the user's.
MOVED_TO_MLOPS = (
    "audit", "boosting", "card", "config", "contract", "deploy", "drift", "export",
    "maturity", "monitor", "plots", "profile", "promote", "register", "retrain", "schema",
    "simulate", "suspects", "tracking", "validate",
)  # fmt: skip
# And the modules it split into a package of one job per module: there is no one file
# for the user's edits to go to.
SPLIT_INTO_PACKAGES = ("drift",)
MOVES = {
    f"src/{{package}}/{name}.py": f"src/{{package}}/mlops/{name}"
    + ("/" if name in SPLIT_INTO_PACKAGES else ".py")
    for name in MOVED_TO_MLOPS
}
# Split in place: the service's settings became a package, one module per capability.
MOVES["src/{package}/serving/settings.py"] = "src/{package}/serving/settings/"


def moves(package: str) -> dict[str, str]:
    return {old.format(package=package): new.format(package=package) for old, new in MOVES.items()}


def state_folder(project: Path) -> Path:
    """Where ``before`` keeps what ``after`` merges: inside the git directory, so that
    nothing of it is ever committed."""
    git_dir = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(git_dir) / "copier-moved-modules"


def old_render(template: str, answers: dict[str, object], destination: Path) -> Path:
    """The project as the template it was made from rendered it (``template`` at the
    answers' recorded commit): Copier's own first step of an update, which its migrations
    cannot see."""
    from copier import run_copy

    data = {key: value for key, value in answers.items() if not key.startswith("_")}
    run_copy(
        template,
        destination,
        data=data,
        vcs_ref=str(answers["_commit"]),
        defaults=True,
        unsafe=True,
        quiet=True,
        skip_tasks=True,
    )
    return destination


def before(project: Path, template: str, answers_file: str) -> int:
    answers = yaml.safe_load((project / answers_file).read_text(encoding="utf-8"))
    package = str(answers["package_name"])
    present = {old: new for old, new in moves(package).items() if (project / old).is_file()}
    state = state_folder(project)
    shutil.rmtree(state, ignore_errors=True)
    if not present:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        base = old_render(template, answers, Path(scratch) / "project")
        for old, new in present.items():
            original = base / old
            if not original.is_file():
                continue  # not the template's then: the user's own file, which stays
            if original.read_bytes() == (project / old).read_bytes():
                continue  # unedited: the update removes it, and renders the new one
            kept = state / new
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project / old, kept.with_name(kept.name + ".yours"))
            shutil.copyfile(original, kept.with_name(kept.name + ".base"))
            (kept.with_name(kept.name + ".from")).write_text(old, encoding="utf-8")
            print(f"copier update: {old} has your edits; it moves to {new}", file=sys.stderr)
    return 0


def after(project: Path) -> int:
    state = state_folder(project)
    if not state.is_dir():
        return 0
    for yours in sorted(state.rglob("*.yours")):
        new = yours.relative_to(state).with_suffix("")  # drop ".yours"
        old = yours.with_suffix(".from").read_text(encoding="utf-8")
        base = yours.with_suffix(".base")
        target = project / new
        if not target.is_file():
            kept = project / old
            if kept.with_suffix("").is_dir():  # split in place: beside it, not importable
                kept = kept.with_name(kept.name + ".yours")
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(yours, kept)
            now = f"split {old} into {new}/" if target.is_dir() else f"no longer has {old}"
            print(
                f"copier update: the template {now}; your edited copy is kept at"
                f" {kept.relative_to(project)}, and nothing imports it any more",
                file=sys.stderr,
            )
            continue
        merged = subprocess.run(
            [
                "git", "merge-file", "-p",
                "-L", f"yours ({old})", "-L", "the template before", "-L", "the template now",
                str(yours), str(base), str(target),
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip
        if merged.returncode < 0 or merged.returncode > 127:
            print(f"copier update: could not merge your {old} into {new}", file=sys.stderr)
            shutil.copyfile(yours, target.with_name(target.name + ".yours"))
            continue
        target.write_bytes(merged.stdout)
        if merged.returncode == 0:
            print(f"copier update: your edits to {old} are merged into {new}", file=sys.stderr)
        else:
            print(
                f"copier update: your edits to {old} clash with the template's changes in {new}:"
                " resolve the conflict markers there",
                file=sys.stderr,
            )
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in {"before", "after"}:
        sys.exit("usage: migrate.py before|after TEMPLATE ANSWERS_FILE")
    stage, template, answers_file = sys.argv[1:]
    project = Path.cwd()
    sys.exit(before(project, template, answers_file) if stage == "before" else after(project))

"""Make the template's release tags from the record on main (releases.yml).

    .venv/bin/python scripts/release_tags.py [--repo PATH] [--record FILE] [--check]

Tags do not travel with a clone of ``main``; the record does. For each release it lists,
this creates the annotated tag ``vVERSION`` on the release's commit when the tag is
missing, and leaves it alone when it is already there on that commit. It refuses (exit 1,
saying which) a record whose commit is not in the history of ``HEAD`` (a shallow clone:
fetch the history), a tag that points at another commit, and a release with no section
in docs/changelog.md. ``--check`` only checks, and creates nothing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECORD = "releases.yml"
CHANGELOG = "docs/changelog.md"
VERSION = re.compile(r"\d+\.\d+\.\d+")


@dataclass(frozen=True)
class Release:
    version: str
    date: str
    commit: str

    @property
    def tag(self) -> str:
        return f"v{self.version}"


class RecordError(Exception):
    """The record, the history and the tags disagree."""


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)


def read_record(record: Path) -> list[Release]:
    """The releases ``record`` (a releases.yml) lists, oldest first."""
    entries = yaml.safe_load(record.read_text(encoding="utf-8")) or []
    releases = []
    for entry in entries:
        release = Release(str(entry["version"]), str(entry["date"]), str(entry["commit"]))
        if not VERSION.fullmatch(release.version):
            raise RecordError(f"{RECORD}: {release.version!r} is not MAJOR.MINOR.PATCH")
        releases.append(release)
    versions = [tuple(map(int, r.version.split("."))) for r in releases]
    if versions != sorted(set(versions)):
        raise RecordError(f"{RECORD}: the versions must be distinct, oldest first")
    return releases


def check(repo: Path, release: Release, changelog: str) -> str | None:
    """The commit the tag points at now (None: no tag yet); RecordError when the release
    cannot be tagged as recorded (or ``changelog``, the text, has no section for it)."""
    found = git(
        repo, "rev-parse", "--verify", "--quiet", f"{release.commit}^{{commit}}", check=False
    )
    if found.returncode != 0:
        raise RecordError(
            f"{release.tag}: commit {release.commit} is not in this clone (a shallow one? "
            "fetch the history: git fetch --unshallow)"
        )
    commit = found.stdout.strip()
    ancestor = git(repo, "merge-base", "--is-ancestor", commit, "HEAD", check=False)
    if ancestor.returncode != 0:
        raise RecordError(f"{release.tag}: commit {commit} is not in the history of HEAD")
    if f"## {release.version} ({release.date})" not in changelog:
        raise RecordError(
            f"{release.tag}: {CHANGELOG} has no section '## {release.version} ({release.date})'"
        )
    tagged = git(
        repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{release.tag}^{{commit}}", check=False
    )
    if tagged.returncode != 0:
        return None
    if tagged.stdout.strip() != commit:
        raise RecordError(
            f"{release.tag} points at {tagged.stdout.strip()}, but {RECORD} says {commit}: "
            "one of them is wrong (a tag is never moved here)"
        )
    return commit


def make_tags(repo: Path, record: Path, *, dry_run: bool = False) -> list[str]:
    """Create the missing tags in ``repo`` that ``record`` lists (checked against the
    changelog beside it); the lines to print, one per release."""
    changelog = (record.parent / CHANGELOG).read_text(encoding="utf-8")
    said = []
    for release in read_record(record):
        if check(repo, release, changelog) is not None:
            said.append(f"{release.tag}: already on {release.commit[:12]}")
            continue
        if not dry_run:
            message = f"Release {release.version} ({release.date}): see {CHANGELOG}"
            git(repo, "tag", "--annotate", release.tag, "--message", message, release.commit)
        said.append(
            f"{release.tag}: {'would be made' if dry_run else 'made'} on {release.commit[:12]}"
        )
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the template's repository")
    parser.add_argument("--record", type=Path, help=f"default: the repository's {RECORD}")
    parser.add_argument("--check", action="store_true", help="check only; create no tag")
    args = parser.parse_args(argv)
    try:
        lines = make_tags(args.repo, args.record or args.repo / RECORD, dry_run=args.check)
    except RecordError as error:
        print(f"release-tags: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"release-tags: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

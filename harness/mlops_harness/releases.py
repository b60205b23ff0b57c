"""The template's release record (``releases.yml``, on main) and its tags: read it, check
each release against the history, the tags and docs/changelog.md, make the missing tags.
``scripts/release_tags.py`` (``make release-tags``) is its command; the release test
reads the record too.

Tags do not travel with a clone of ``main``; the record does. A release's annotated tag
``vVERSION`` is made on its commit when missing, and left alone when it is already there
on that commit. A record whose commit is not in the history of ``HEAD``, a tag that
points at another commit, and a release with no section in the changelog are refused
(``RecordError``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    """Git as the caller has it configured (not processes.git's test identity): the tags
    are made by whoever releases, the Release workflow's bot on main."""
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

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
import sys
from pathlib import Path

from mlops_harness.paths import ROOT
from mlops_harness.releases import RECORD, RecordError, make_tags


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

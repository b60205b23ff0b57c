"""Docs that cannot drift, and the README's two commands."""

from __future__ import annotations

import re

import pytest

from mlops_harness.ladder import ladder
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import run

pytestmark = [pytest.mark.xdist_scope("test"), pytest.mark.level_independent]


def test_the_reference_is_generated_from_the_tables() -> None:
    run([tool("python"), "scripts/docs.py", "--check"], ROOT)


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block and readme.index(first_block.group(0)) < 200
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}: setup ##", makefile, re.M), target


def test_the_readme_ladder_lists_every_level_as_built_or_not() -> None:
    readme = (ROOT / "README.md").read_text()
    for level in ladder().LEVELS:
        row = re.search(
            rf"^\| {level.number} \| {re.escape(level.name)} \|.*\| (\S.*?) \|$", readme, re.M
        )
        assert row, f"level {level.number} is not in the README's table"
        assert row.group(1) == ("yes" if level.built else "not yet")


def test_the_guide_s_pictures_are_the_docs_screenshots() -> None:
    """The level-4 GUIDE shows pictures from the project's monitoring/pictures/: each one
    it links is there, and is the screenshot the suite took for the docs (copied by
    scripts/screenshots.py), not an older one."""
    guide = (ROOT / "template" / "GUIDE.md.jinja").read_text()
    linked = re.findall(r"\]\(monitoring/pictures/([\w.-]+)\)", guide)
    assert linked, "the GUIDE shows no picture"
    folder = ROOT / "template" / "{% if has_observe_stack %}monitoring{% endif %}"
    pictures = folder / "{% if has_alerting %}pictures{% endif %}"
    assert sorted(path.name for path in pictures.iterdir()) == sorted(linked)
    for name in linked:
        docs = ROOT / "docs" / "screenshots" / name
        assert (pictures / name).read_bytes() == docs.read_bytes(), f"{name} is not the docs'"

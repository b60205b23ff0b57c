"""The docs site's generated pages, made at build time from real renders (an MkDocs hook:
``hooks:`` in mkdocs.yml; `make docs` builds the site strictly, `make docs-serve` previews).

- ``ladder.md``: the five levels as a staircase (an SVG drawn here from the capability
  table: no CDN, no script) and what each level is;
- ``levels/level-N.md``: for every level, what its capabilities add (and the files), the
  tasks its Makefile offers (read from the render's own Makefile), and the file tree of a
  render of the template as it is;
- ``questions.md``: copier.yml's questions with the defaults a user is offered (read from
  the answers file of a render on the defaults, not the raw Jinja);
- ``climbing-example.md``: what `copier update` from level 1 to 2 really changes, on a
  committed render: the files added and changed, and an excerpt of the Makefile's diff.

The renders take a few seconds each, once per build (``mkdocs serve`` renders again on
every rebuild).
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File, Files

from mlops_harness.ladder import described_files, ladder
from mlops_harness.paths import ROOT
from mlops_harness.processes import git
from mlops_harness.rendering import render_project, snapshot_template, update_project

TREE_SKIP = {".git"}


def render(template: Path, destination: Path, **answers: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Copier's notes about dirty trees and trust
        return render_project(template, destination, **answers)


def tree(root: Path) -> str:
    """The render's files and folders, as `tree` draws them."""
    lines = [f"{root.name}/"]

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(
            (p for p in folder.iterdir() if p.name not in TREE_SKIP),
            key=lambda p: (p.is_file(), p.name),
        )
        for index, entry in enumerate(entries):
            last = index == len(entries) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{entry.name}{'/' * entry.is_dir()}")
            if entry.is_dir():
                walk(entry, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines)


def make_tasks(project: Path) -> list[tuple[str, str]]:
    """The Makefile's documented targets: (name, help), in the file's order."""
    pattern = re.compile(r"^([a-zA-Z_-]+):.*?## (.*)$", re.M)
    return pattern.findall((project / "Makefile").read_text())


# The ladder, drawn ---------------------------------------------------------------------------

STEP_WIDTH, STEP_RISE, COLUMN_GAP = 152, 40, 6
TOP, LIST_LINE = 4, 17


def ladder_svg() -> str:
    """A staircase of the levels, each step naming the level and listing the capabilities
    it adds. Plain SVG, styled inline, so it reads the same anywhere."""
    table = ladder()
    levels, caps = table.LEVELS, table.CAPABILITIES
    base = TOP + STEP_RISE * (len(levels) - 1)  # the lowest step's top edge
    longest = max(sum(cap.level == level.number for cap in caps) for level in levels)
    height = base + 86 + longest * LIST_LINE + 8
    width = len(levels) * (STEP_WIDTH + COLUMN_GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="The MLOps maturity ladder, levels 0 to 4" '
        'font-family="system-ui, sans-serif">'
    ]
    for level in levels:
        x = level.number * (STEP_WIDTH + COLUMN_GAP)
        y = base - STEP_RISE * level.number
        fill = "#00897b" if level.built else "#b0bec5"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{STEP_WIDTH}" height="{height - y}" rx="6" '
            f'fill="{fill}" fill-opacity="0.12" stroke="{fill}" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{x + 10}" y="{y + 24}" font-size="17" font-weight="700" '
            f'fill="{fill}">Level {level.number}</text>'
        )
        words, line, lines = level.name.split(), "", []
        for word in words:  # wrap the name to fit the step
            if line and len(line) + len(word) > 16:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        for number, text in enumerate(lines):
            parts.append(
                f'<text x="{x + 10}" y="{y + 44 + number * 17}" font-size="13.5" '
                f'fill="#263238">{html.escape(text)}</text>'
            )
        added = [cap for cap in caps if cap.level == level.number]
        first = base + 86
        parts.append(
            f'<text x="{x + 10}" y="{first - 8}" font-size="12" font-style="italic" '
            f'fill="#546e7a">+{len(added)} capabilities</text>'
        )
        for number, cap in enumerate(added):
            name = cap.name.removeprefix("has_").replace("_", " ")
            parts.append(
                f'<text x="{x + 12}" y="{first + 12 + number * LIST_LINE}" font-size="12.5" '
                f'fill="#37474f"><title>{html.escape(cap.summary)}</title>'
                f"{html.escape(name)}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def ladder_page() -> str:
    table = ladder()
    rows = "\n".join(
        f"| [{level.number}](levels/level-{level.number}.md) | {level.name} | {level.google} "
        f"| {level.summary} | {'yes' if level.built else 'not yet'} |"
        for level in table.LEVELS
    )
    return (
        "# The ladder\n\nEach level includes everything below it. The steps name the "
        "capabilities each level adds (hover for what each gives); drawn at build time from "
        "the capability table in `extensions/context.py`.\n\n"
        f'<div class="ladder">\n{ladder_svg()}\n</div>\n\n'
        "| level | Azure model | Google model | what it is | built |\n|---|---|---|---|---|\n"
        f"{rows}\n"
    )


# Pages from renders --------------------------------------------------------------------------


# Pictures of what a level adds (scripts/screenshots.py takes them), by the level that adds it.
SCREENSHOTS = {
    0: [("api-docs.png", "The service's interactive docs (`/docs`), served with no network")],
    2: [
        ("dvc-plots.png", "`make plots`: the pipeline's plots"),
        ("mlflow-ui.png", "`make ui`: the MLflow UI on the project's runs"),
        ("mlflow-model.png", "`make ui`: the registered model, its versions and lineage tags"),
    ],
    4: [
        ("drift-report.png", "`make monitor`: the drift report of a shifted window"),
        ("prometheus-alerts.png", "`make observe`: Prometheus' alerts, the service down"),
    ],
}


def pictures(number: int) -> list[str]:
    """The level's screenshots that have been taken, as Markdown."""
    shown = [
        f"![{caption}](../screenshots/{name})\n\n*{caption}.*\n"
        for name, caption in SCREENSHOTS.get(number, [])
        if (ROOT / "docs" / "screenshots" / name).is_file()
    ]
    return ["## What it looks like", "", *shown] if shown else []


def level_page(number: int, project: Path) -> str:
    table = ladder()
    level = table.LEVELS[number]
    package = "tabular_classifier"
    lines = [
        f"# Level {number}: {level.name}",
        "",
        f"{level.summary.capitalize()}. Google's model: {level.google}."
        + ("" if level.built else " **Not built yet**: this level renders the level below."),
        "",
        "## What it adds" if number else "## What it has",
        "",
        "| capability | what it gives | files |",
        "|---|---|---|",
    ]
    for cap in table.CAPABILITIES:
        if cap.level == number:
            files = described_files(cap, package) or "(none of its own)"
            lines.append(f"| `{cap.name}` | {cap.summary} | {files} |")
    lines += [
        "",
        "How each is proven: the suite renders this level and checks exactly these files, "
        "then runs them (see [what proves it](../index.md#what-proves-it)).",
        "",
        *pictures(number),
        "## The commands",
        "",
        "`make help` in a project at this level (read from the render's Makefile):",
        "",
        "| task | what it does |",
        "|---|---|",
        *(f"| `make {name}` | {text.replace('|', '/')} |" for name, text in make_tasks(project)),
        "",
        "## The files",
        "",
        "A render on the defaults, made when this site was built:",
        "",
        "```text",
        tree(project),
        "```",
        "",
    ]
    return "\n".join(lines)


def questions_page(template: Path, project: Path) -> str:
    """copier.yml's questions, with the defaults a user is offered: the answers a render
    on the defaults recorded (the Jinja worked out), else the default as written."""
    questions = yaml.safe_load((template / "copier.yml").read_text())
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    lines = [
        "# Questions",
        "",
        "What `copier copy` asks, with the default each offers on a first copy (a question "
        "marked *own data* is asked only for `dataset: own`).",
        "",
        "| question | what it sets | default | choices |",
        "|---|---|---|---|",
    ]
    for name, spec in questions.items():
        if name.startswith("_") or not isinstance(spec, dict):
            continue
        default = answers.get(name, spec.get("default", ""))
        choices = spec.get("choices")
        if isinstance(choices, dict):
            choices = list(choices.values())
        listed = ", ".join(f"`{choice}`" for choice in choices) if choices else "free text"
        when = " (*own data*)" if "own" in str(spec.get("when", "")) else ""
        text = " ".join(str(spec.get("help", "")).split()).replace("|", "/")
        lines.append(f"| `{name}`{when} | {text} | `{default}` | {listed} |")
    return "\n".join(lines) + "\n"


def climbing_page(template: Path, scratch: Path) -> str:
    """`copier update` from level 1 to 2 on a committed render, as it really goes."""
    project = render(template, scratch / "climb", maturity_level=1)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "Generate project")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        update_project(project, maturity_level=2)
    git(project, "add", "--all")
    status = git(project, "diff", "--cached", "--name-status").stdout.splitlines()
    added = [line.split("\t")[-1] for line in status if line.startswith("A")]
    changed = [line.split("\t")[-1] for line in status if line.startswith("M")]
    removed = [line.split("\t")[-1] for line in status if line.startswith("D")]
    stat = git(project, "diff", "--cached", "--stat", "--", *changed).stdout.rstrip()
    diff = git(project, "diff", "--cached", "--", "Makefile").stdout.splitlines()
    lines = [
        "# Climbing from 1 to 2, as it happens",
        "",
        "A project rendered at level 1 on the defaults and committed, then `copier update "
        "--trust --defaults --data maturity_level=2`: what the update did, recorded when "
        "this site was built. Your own edits would be merged into the changed files (see "
        "[climbing](climbing.md)).",
        "",
        f"## {len(added)} files added",
        "",
        *(f"- `{name}`" for name in added),
        "",
        f"## {len(changed)} files changed",
        "",
        "```text",
        stat,
        "```",
        "",
    ]
    if removed:
        lines += [f"## {len(removed)} files removed", "", *(f"- `{name}`" for name in removed), ""]
    lines += [
        "## An excerpt: the Makefile",
        "",
        "```diff",
        *diff[:60],
        *(["..."] if len(diff) > 60 else []),
        "```",
        "",
    ]
    return "\n".join(lines)


THREAT_MODEL = "## Who can do what"


def guide_section(project: Path, heading: str) -> list[str]:
    """The lines of the render's GUIDE.md section under ``heading`` (none if it has none)."""
    lines = (project / "GUIDE.md").read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    return lines[start + 1 : end]


def threat_model_page(projects: dict[int, Path]) -> str:
    """The GUIDE's threat model at the highest level, each row the lowest level has not
    marked with the level that brings it."""
    sections = {n: guide_section(p, THREAT_MODEL) for n, p in projects.items()}
    sections = {n: lines for n, lines in sections.items() if lines}
    first, top = min(sections), max(sections)
    known = set(sections[first])
    lines = [
        "# Threat model",
        "",
        f"From level {first}, each project's `GUIDE.md` says who can do what to it: each"
        " route, the registry, the DVC remote, the CI token. Here is the table of a level"
        f" {top} render on the defaults, made when this site was built; the rows marked with"
        f" a level arrive with it.",
    ]
    for line in sections[top]:
        if line.startswith("| ") and line not in known and not line.startswith("|---"):
            cells = line.split(" | ")
            level = next(n for n in sorted(sections) if line in sections[n])
            line = " | ".join([f"{cells[0]} (level {level})", *cells[1:]])
        lines.append(line)
    return "\n".join([*lines, ""])


def generated_pages() -> dict[str, str]:
    """Every generated page, by its path in the site."""
    pages = {"ladder.md": ladder_page()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        template = snapshot_template(work / "template")
        projects = {}
        for level in ladder().LEVELS:
            project = render(template, work / f"level-{level.number}", maturity_level=level.number)
            pages[f"levels/level-{level.number}.md"] = level_page(level.number, project)
            shutil.rmtree(project / ".git", ignore_errors=True)
            projects[level.number] = project
        pages["threat-model.md"] = threat_model_page(projects)
        pages["questions.md"] = questions_page(template, render(template, work / "defaults"))
        pages["climbing-example.md"] = climbing_page(template, work)
    return pages


def on_files(files: Files, config: Any) -> Files:
    """MkDocs: add the generated pages to the site's files."""
    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files

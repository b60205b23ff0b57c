"""The docs site builds strictly (a broken link or page fails), from real renders, and
fetches nothing from elsewhere: the ladder drawn as inline SVG, a page per level with
its file tree and commands, the questions' real defaults, a real climb's change set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlops_harness.ladder import capabilities, ladder
from mlops_harness.paths import ROOT
from mlops_harness.processes import run

pytestmark = [pytest.mark.slow, pytest.mark.level_independent]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run([str(ROOT / ".venv" / "bin" / "mkdocs"), "build", "--strict", "-d", str(built)], ROOT, env)
    return built


def page(site: Path, name: str) -> str:
    """The page's own content (its article: not the navigation or the table of contents)."""
    text = (site / name / "index.html").read_text(encoding="utf-8")
    return text[text.index("<article") : text.index("</article>")]


def test_the_site_fetches_nothing_from_elsewhere(site: Path) -> None:
    for path in site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        loaded = re.findall(r'(?:src|href)="(https?://[^"]+\.(?:js|css|woff2?))"', text)
        assert not loaded, (path, loaded)
        assert "fonts.googleapis.com" not in text, path


def test_the_ladder_is_drawn_from_the_capability_table(site: Path) -> None:
    text = page(site, "ladder")
    start = text.rindex("<svg", 0, text.index('aria-label="The MLOps maturity ladder'))
    svg = text[start : text.index("</svg>", start)]
    table = ladder()
    for level in table.LEVELS:
        assert f">Level {level.number}</text>" in svg
    for cap in table.CAPABILITIES:
        assert cap.name.removeprefix("has_").replace("_", " ") in svg, cap.name


@pytest.mark.parametrize("level", range(5))
def test_each_level_s_page_shows_a_real_render_and_its_commands(site: Path, level: int) -> None:
    text = page(site, f"levels/level-{level}")
    caps = capabilities(level)
    assert ("dvc.yaml" in text) == caps["has_pipeline"]
    assert ("deploy.yml" in text) == caps["has_cd"]
    assert ("make train" in text) and ("make maturity" in text)
    assert ("make monitor" in text) == caps["has_drift_detection"]
    for cap in ladder().CAPABILITIES:
        if cap.level == level:
            assert f"<code>{cap.name}</code>" in text


def test_the_questions_show_the_defaults_a_user_is_offered(site: Path) -> None:
    text = page(site, "questions")
    assert "{{" not in text and "tabular-classifier" in text and "tabular_classifier" in text


def test_the_climbing_example_is_a_real_update(site: Path) -> None:
    text = page(site, "climbing-example")
    added = text[text.index("files added") : text.index("files changed")]
    for name in ("dvc.yaml", ".github/workflows/train.yml", "tracking.py", "register.py"):
        assert name in added, name
    changed = text[text.index("files changed") :]
    for name in ("Makefile", "params.yaml", "GUIDE.md", ".copier-answers.yml"):
        assert name in changed, name
    assert "README.md" not in changed, "the README is the user's: no update touches it"


def test_the_threat_model_is_the_guide_s_with_each_row_s_level(site: Path) -> None:
    text = page(site, "threat-model")
    for asset in ("POST /predict", "the MLflow registry", "the DVC remote", "the CI token"):
        assert asset in text, asset
    assert "POST /feedback</code> (labels steer retraining) (level 4)" in text
    assert "the audit trail (level 4)" in text
    assert "the DVC remote (level" not in text

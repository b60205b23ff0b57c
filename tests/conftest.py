"""Fixtures: the template snapshot, one render per level, the shared project environment.
How the suite shares out over processes, and which tests run once, each test module says
with its markers (mlops_harness/scheduling.py, loaded here, reads them).

Test modules get these by fixture injection and never import this file; the helpers they
share are in the harness package (``mlops_harness``), which `make setup` installs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_harness.environments import ProjectEnv, shared_project_env
from mlops_harness.ladder import capabilities, other_providers, selected_levels
from mlops_harness.rendering import Render, render_project, snapshot_template

pytest_plugins = ["mlops_harness.scheduling"]


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def render(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Render the template with the defaults plus ``answers`` into a new folder."""

    def _render(name: str = "project", **answers: Any) -> Path:
        return render_project(template, tmp_path_factory.mktemp(name) / "project", **answers)

    return _render


@pytest.fixture(scope="session", params=selected_levels(), ids=lambda level: f"level-{level}")
def rendered(request: pytest.FixtureRequest, render: Render) -> tuple[int, Path]:
    """Each level rendered once per session on the defaults: many cheap tests read it."""
    level: int = request.param
    return level, render(f"level{level}", maturity_level=level)


ELSEWHERE = [
    (level, provider)
    for provider in other_providers()
    for level in selected_levels()
    if capabilities(level)["has_ci"]
]


@pytest.fixture(scope="session", params=ELSEWHERE, ids=lambda run: f"level-{run[0]}-{run[1]}")
def rendered_elsewhere(request: pytest.FixtureRequest, render: Render) -> tuple[int, str, Path]:
    """Each level with CI rendered once per session for each CI provider beside the
    default one (``rendered``'s): the level, the provider and the project."""
    level, provider = request.param
    path = render(f"level{level}{provider}", maturity_level=level, ci_provider=provider)
    return level, provider, path


@pytest.fixture(scope="session")
def project_env() -> ProjectEnv:
    """One virtual environment for every generated project (see shared_project_env)."""
    return shared_project_env()

"""Fixtures: the template snapshot, one render per level, the shared project environment;
and how the suite shares out over processes (pytest-xdist).

Test modules get these by fixture injection and never import this file; the helpers they
share are in the harness package (``mlops_harness``), which `make setup` installs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mlops_harness.environments import ProjectEnv, shared_project_env
from mlops_harness.ladder import selected_levels
from mlops_harness.rendering import Render, render_project, snapshot_template


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


@pytest.fixture(scope="session")
def project_env() -> ProjectEnv:
    """One virtual environment for every generated project (see shared_project_env)."""
    return shared_project_env()


# How the suite shares out over processes (pytest-xdist): a test goes with the others of
# its scope, so that an expensive module-scoped fixture (a project rendered, installed
# and trained; a Docker engine) is made once, in one process. These modules split by
# their parameter (each executed level on its own), these are cheap or independent test
# by test, and every other module stays whole.
SPLIT_BY_PARAMETER = frozenset({"tests/test_execute.py", "tests/test_headers.py"})
TEST_BY_TEST = frozenset(
    {
        "tests/test_datasets.py",
        "tests/test_docs.py",
        "tests/test_maturity.py",
        "tests/test_questions.py",
        "tests/test_render.py",
        "tests/test_update.py",
        "tests/test_workflows.py",
    }
)


def xdist_scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    if module in TEST_BY_TEST:
        return nodeid
    if module in SPLIT_BY_PARAMETER and nodeid.endswith("]"):
        return module + "[" + nodeid.rsplit("[", 1)[1]
    return module


# Modules whose checks do not depend on the level (the questions, the docs and the site,
# the release update and the object-store remote at their fixed level): the CI matrix
# runs them once, in their own job (`make test-once`: $LEVEL_INDEPENDENT=only), not in
# every level's cell (with $LEVELS set they are left out, unless $LEVEL_INDEPENDENT is set).
LEVEL_INDEPENDENT = frozenset(
    {
        "tests/test_docs.py",
        "tests/test_questions.py",
        "tests/test_readme.py",
        "tests/test_release.py",
        "tests/test_remote.py",
        "tests/test_site.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = os.environ.get("LEVEL_INDEPENDENT", "")
    if mode == "only":
        wanted = True
    elif os.environ.get("LEVELS", "").strip() and not mode:
        wanted = False
    else:
        return
    kept = [item for item in items if (item.nodeid.split("::")[0] in LEVEL_INDEPENDENT) == wanted]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ByScope(config, log)

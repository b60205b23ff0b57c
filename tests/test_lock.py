"""The slow tier: the generated project's lock file, as its users meet it.

CI (UV_LOCKED=1) and the image install exactly what uv.lock records and fail loudly when
it no longer matches pyproject.toml; a plain `make install` re-locks only what changed.
(That the first `make install` writes the lock, that a fresh .venv is exactly the lock,
and that without uv pip installs pyproject.toml's pins: test_execute.py, as each level's
guide runs.)
"""

from __future__ import annotations

import pytest

from mlops_harness.environments import ProjectEnv
from mlops_harness.ladder import selected_levels
from mlops_harness.locks import installed_versions, locked_versions
from mlops_harness.processes import git, run
from mlops_harness.projects import Project, installed
from mlops_harness.rendering import Render

pytestmark = pytest.mark.slow

LEVELS = selected_levels(built_only=True)


@pytest.fixture(scope="module")
def project(render: Render, project_env: ProjectEnv) -> Project:
    """The highest level under test (the most dependencies), installed and committed."""
    return installed(render("lock", maturity_level=max(LEVELS)), project_env)


def test_a_stale_lock_fails_under_uv_locked_and_a_plain_install_relocks_it(
    project: Project,
) -> None:
    """A new direct dependency in pyproject.toml: with UV_LOCKED=1, as in CI, `make install`
    fails, says the lock needs updating, and changes neither the lock nor the environment.
    Then `make install`, as a user runs it, re-locks: the new dependency is recorded and
    every version already in the lock stays as it was."""
    locked = locked_versions(project.path)
    # A package the lock already holds at one version, now asked for directly: the lock
    # must change (the project's own entry lists its dependencies), the versions must not.
    name = "packaging"
    (version,) = locked[name]
    pyproject = project.path / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(
        text.replace("dependencies = [\n", f'dependencies = [\n    "{name}=={version}",\n', 1),
        encoding="utf-8",
    )
    lock_before = (project.path / "uv.lock").read_bytes()
    environment_before = installed_versions(project.tools.python, project.path, project.env)
    try:
        refused = run(
            ["make", "install", f"PYTHON={project.tools.python}"],
            project.path,
            {**project.env, "UV_LOCKED": "1"},
            check=False,
        )
        assert refused.returncode != 0
        assert "needs to be updated" in refused.stderr, refused.stderr
        assert (project.path / "uv.lock").read_bytes() == lock_before
        after = installed_versions(project.tools.python, project.path, project.env)
        assert after == environment_before

        project.make("install")
        relocked = (project.path / "uv.lock").read_text(encoding="utf-8")
        assert relocked.encode() != lock_before
        assert f'{{ name = "{name}", specifier = "=={version}" }}' in relocked
        assert locked_versions(project.path) == locked
    finally:
        git(project.path, "checkout", "--", "pyproject.toml", "uv.lock")

"""The slow tier: the generated project's lock file, as its users meet it.

The first `make install` writes uv.lock; CI (UV_LOCKED=1) and the image install exactly
what it records and fail loudly when it no longer matches pyproject.toml; a plain
`make install` re-locks only what changed; a fresh `.venv` is exactly the lock; and
without uv, pip still installs the project from pyproject.toml's pins.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import Render
from support import (
    Project,
    ProjectEnv,
    git,
    installed,
    installed_versions,
    locked_versions,
    not_as_locked,
    open_project,
    pinned_versions,
    run,
    selected_levels,
    tool,
)

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


def test_make_install_makes_a_venv_that_is_exactly_the_lock(
    project: Project, tmp_path: Path
) -> None:
    """A user's own clone and a bare `make install` (no PYTHON): .venv holds exactly the
    versions uv.lock records, uv's own check agrees, and the project runs from it."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(project.path), str(clone))
    env = project.tools.env_for(clone)
    run(["make", "install"], clone, env)
    python = clone / ".venv" / "bin" / "python"
    present = installed_versions(python, clone, env)
    stray = not_as_locked(present, locked_versions(clone))
    assert not stray, f"installed, not as locked: {stray}"
    assert set(pinned_versions(clone)) <= set(present)
    assert (clone / "uv.lock").read_bytes() == (project.path / "uv.lock").read_bytes()
    run(
        [tool("uv"), "sync", "--locked", "--check"],
        clone,
        {**env, "UV_PROJECT_ENVIRONMENT": str(clone / ".venv")},
    )
    # The project's own commands, on .venv (the Makefile's default PYTHON).
    assert f"level {project.level}" in run(["make", "maturity"], clone, env).stdout.lower()
    run([str(python), "-c", f"import {project.package}.serving.app"], clone, env)


def test_without_uv_pip_installs_the_project_from_its_pins(
    render: Render, project_env: ProjectEnv
) -> None:
    """No uv on PATH: `make install` says the lock is not used, and pip installs the
    project and its dev group into .venv at pyproject.toml's pins (the lowest level under
    test: the fewest dependencies to download)."""
    level = min(LEVELS)
    path = render("pip", maturity_level=level)
    interpreter = Path(sys.base_prefix) / "bin"  # a Python with no uv beside it
    search = os.pathsep.join([str(interpreter), "/usr/bin", "/bin"])
    if shutil.which("uv", path=search):
        pytest.skip(f"uv is installed beside the base Python ({interpreter})")
    env = {**project_env.env_for(path), "PATH": search}
    result = run(["make", "install"], path, env)
    assert "uv is not on PATH" in result.stderr
    assert not (path / "uv.lock").exists()
    python = path / ".venv" / "bin" / "python"
    present = installed_versions(python, path, env)
    for name, version in pinned_versions(path).items():
        assert present.get(name) == version, f"{name}: pyproject pins {version}"
    package = open_project(path, project_env).package
    run([str(python), "-c", f"import {package}.serving.app"], path, {**env, "PYTHONPATH": ""})

"""The slow tier: a project whose DVC remote is an object store (the `dvc_remote` answer
`s3://...`) pushes its data there and a fresh clone pulls the same bytes back, against a
real S3-compatible server on this machine (moto's server, over HTTP). Its dev group pins
DVC's S3 plugin (the `dvc[s3]` extra), which the lock then holds. The project runs in
its own .venv, as its user has it: the plugin's botocore pins python-dateutil below the
version the other projects lock, so it cannot share their environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_harness import stores
from mlops_harness.environments import UserShell
from mlops_harness.locks import locked_versions
from mlops_harness.processes import git, run
from mlops_harness.projects import installed, raw_data
from mlops_harness.rendering import Render
from mlops_harness.stores import CREDENTIALS

pytestmark = [pytest.mark.slow, pytest.mark.level_independent]

BUCKET = "team-bucket"


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server on a free port, with the bucket made; its URL."""
    with stores.object_store(tmp_path_factory.mktemp("object-store"), BUCKET) as url:
        yield url


def test_an_object_store_remote_keeps_the_data_for_a_fresh_clone(
    render: Render, object_store: str, tmp_path: Path
) -> None:
    path = render("remote", maturity_level=1, dvc_remote=f"s3://{BUCKET}/dvc")
    project = installed(path, UserShell(path))
    assert "dvc-s3" in locked_versions(project.path), "the lock lacks DVC's S3 plugin"

    def configure(folder: Path) -> dict[str, str]:
        """The endpoint of this machine's server, in the clone's local (uncommitted)
        DVC config, as a team sets its own; the credentials in the environment."""
        env = {**project.tools.env_for(folder), **CREDENTIALS}
        dvc = [str(project.tools.python), "-m", "dvc"]
        run(
            [*dvc, "remote", "modify", "--local", "storage", "endpointurl", object_store],
            folder,
            env,
        )
        return env

    env = configure(project.path)
    run(["make", "data", f"PYTHON={project.tools.python}"], project.path, env)
    pushed = run(["make", "push", f"PYTHON={project.tools.python}"], project.path, env)
    assert "1 file pushed" in pushed.stdout + pushed.stderr
    git(project.path, "add", "--all")
    git(project.path, "commit", "--quiet", "--message", "Version the raw data")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(project.path), str(clone))
    env = configure(clone)
    run(["make", "pull", f"PYTHON={project.tools.python}"], clone, env)
    original = raw_data(project)
    assert (clone / original.relative_to(project.path)).read_bytes() == original.read_bytes()

"""The slow tier: a project whose DVC remote is an object store (the `dvc_remote` answer
`s3://...`) pushes its data there and a fresh clone pulls the same bytes back, against a
real S3-compatible server on this machine (moto's server, over HTTP). Its dev group pins
DVC's S3 plugin (the `dvc[s3]` extra), which the lock then holds. The project runs in
its own .venv, as its user has it: the plugin's botocore pins python-dateutil below the
version the other projects lock, so it cannot share their environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_harness.environments import UserShell
from mlops_harness.locks import locked_versions
from mlops_harness.paths import tool
from mlops_harness.processes import free_port, git, run, spawn, stop_group
from mlops_harness.projects import installed, raw_data
from mlops_harness.rendering import Render
from mlops_harness.servers import wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.level_independent]

BUCKET = "team-bucket"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server on a free port, with the bucket made; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("object-store") / "server.log"
    process = spawn([tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log, os.environ)
    try:
        wait_for_http(f"{url}/moto-api/", process)
        create = (
            f"import boto3; boto3.client('s3', endpoint_url='{url}')"
            f".create_bucket(Bucket='{BUCKET}')"
        )
        run([sys.executable, "-c", create], log.parent, {**os.environ, **CREDENTIALS})
        yield url
    finally:
        stop_group(process)


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

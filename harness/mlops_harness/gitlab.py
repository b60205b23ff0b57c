"""A generated project's GitLab CI, run here: gitlab-ci-local (npm, in tests/tools, the
release that runs on Node 20: see FIELD-NOTES) executes its jobs in its shell executor,
in a fresh clone of the project, as a runner checks it out."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from mlops_harness.environments import SYSTEM_PATH, user_env
from mlops_harness.paths import CACHE, ROOT, tool
from mlops_harness.processes import Run, git, run
from mlops_harness.servers import PostRecorder

GITLAB_CI_LOCAL = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "gitlab-ci-local"
# The remote a runner's checkout has: gitlab-ci-local reads the project's path from it.
GITLAB_REMOTE = "https://gitlab.example.com/team/project.git"


def ci_files(project: Path) -> list[Path]:
    """The root file and the files it includes."""
    root = project / ".gitlab-ci.yml"
    config = yaml.safe_load(root.read_text(encoding="utf-8"))
    return [root, *(project / entry["local"] for entry in config.get("include", []))]


def pipeline(project: Path) -> dict[str, Any]:
    """The whole configuration, the includes merged into the root file's keys."""
    files = ci_files(project)
    config: dict[str, Any] = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    config.pop("include", None)
    for path in files[1:]:
        config.update(yaml.safe_load(path.read_text(encoding="utf-8")))
    return config


def jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The jobs, hidden ones (``.python``) included, without the global keywords."""
    keywords = {"workflow", "stages", "variables", "default", "include"}
    return {name: job for name, job in config.items() if name not in keywords}


def shell_config(project: Path, destination: Path) -> Path:
    """The project's configuration in one file, without the ``image`` and ``services``
    keys: gitlab-ci-local runs a job that names an image in Docker, and no image
    registry answers here. Everything else (rules, needs, variables, scripts, artifacts)
    is the project's own."""
    config = pipeline(project)
    for job in jobs(config).values():
        job.pop("image", None)
        job.pop("services", None)
    destination.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return destination


def runner_checkout(project: Path, scratch: Path) -> Path:
    """``project`` (committed) pushed to a bare repository that stands for GitLab's, then
    cloned afresh, as a runner checks it out: no .venv, nothing untracked. Its main
    branch is origin/main, which rules:changes compares the checkout with."""
    origin, checkout = scratch / "origin.git", scratch / "checkout"
    git(scratch, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(project, "push", "--quiet", str(origin), "HEAD:refs/heads/main")
    git(scratch, "clone", "--quiet", str(origin), str(checkout))
    git(checkout, "remote", "set-url", "origin", GITLAB_REMOTE)
    git(checkout, "fetch", "--quiet", str(origin), "+refs/heads/main:refs/remotes/origin/main")
    return checkout


def runner_python(scratch: Path) -> Path:
    """A fresh virtual environment's bin folder: the job image's Python, into which the
    jobs' ``python -m pip install uv`` installs."""
    venv = scratch / "runner"
    if not venv.exists():
        run([sys.executable, "-m", "venv", str(venv)], scratch)
    return venv / "bin"


def run_jobs(checkout: Path, names: list[str], scratch: Path, *options: str) -> Run:
    """gitlab-ci-local on ``checkout``'s pipeline (its shell copy, outside the checkout),
    running ``names`` one after another, from a plain shell whose only Python is the
    runner's. uv's and pre-commit's caches are the machine's: they stand for GitLab's
    cache, warm (the jobs key it on uv.lock)."""
    config = shell_config(checkout, scratch / "gitlab-ci.shell.yml")
    env = user_env(uv=False)
    env["PATH"] = f"{runner_python(scratch)}{os.pathsep}{SYSTEM_PATH}"
    uv_cache = run([tool("uv"), "cache", "dir"], scratch).stdout.strip()
    command = [
        str(GITLAB_CI_LOCAL),
        "--file", os.path.relpath(config, checkout),
        "--state-dir", os.path.relpath(scratch / "gitlab-ci-local", checkout),
        "--concurrency", "1",  # the jobs of a stage share the checkout's .venv here
        "--variable", f"UV_CACHE_DIR={uv_cache}",
        "--variable", f"PRE_COMMIT_HOME={CACHE / 'pre-commit'}",
        *options,
        *names,
    ]  # fmt: skip
    return run(command, checkout, env, check=False, timeout=1800)


def verdicts(result: Run) -> dict[str, str]:
    """Each job's PASS or FAIL, from gitlab-ci-local's summary."""
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in {"PASS", "FAIL"}:
            found[words[1]] = words[0]
    return found


class ApiRecorder(PostRecorder):
    """Stands in for GitLab's REST API, which cannot run here: it records each request a
    job sends and answers 201 Created."""

    def __init__(self) -> None:
        super().__init__(status=201)

    @property
    def url(self) -> str:
        """What a job reads as CI_API_V4_URL."""
        return f"{self.address}/api/v4"

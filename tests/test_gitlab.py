"""GitLab CI, the second CI provider (``ci_provider: gitlab``). At every level with CI its
pipeline passes GitLab's schema and keeps GitLab's conventions, and Renovate's config
passes Renovate's. Then, run here by gitlab-ci-local in a runner's fresh checkout from a
plain shell: the level-1 checks pass and a planted lint error fails them; the level-2
training job runs when params.yaml changes, and registers a model. A GitHub project
switches to GitLab, and a GitLab project climbs, keeping the user's edits."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_harness.environments import user_env
from mlops_harness.gitlab import (
    ApiRecorder,
    ci_files,
    jobs,
    pipeline,
    run_jobs,
    runner_checkout,
    verdicts,
)
from mlops_harness.ladder import (
    capabilities,
    lowest_built_level_with,
    selected_levels,
    selected_providers,
)
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import git, run
from mlops_harness.projects import assessed
from mlops_harness.rendering import Render, text_files, update_project

pytestmark = pytest.mark.xdist_scope("test")

GITLAB = [provider for provider in selected_providers() if provider == "gitlab"]
CHECKS = ["lint", "typecheck", "test"]
CREDENTIAL = re.compile(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY|KUBE_CONFIG", re.I)


def gitlab_render(rendered_elsewhere: tuple[int, str, Path]) -> tuple[int, Path]:
    level, provider, project = rendered_elsewhere
    if provider != "gitlab":
        pytest.skip(f"checks GitLab's files, not {provider}'s")
    return level, project


def schema(builtin: str, *paths: Path) -> None:
    run([tool("check-jsonschema"), "--builtin-schema", builtin, *map(str, paths)], paths[0].parent)


def test_the_pipeline_passes_gitlab_s_schema_and_renovate_s(
    rendered_elsewhere: tuple[int, str, Path],
) -> None:
    _, project = gitlab_render(rendered_elsewhere)
    schema("vendor.gitlab-ci", *ci_files(project))
    schema("vendor.renovate", project / "renovate.json")
    assert not (project / ".github").exists(), "a GitLab project has no GitHub workflows"


def test_the_validators_catch_a_bad_pipeline(tmp_path: Path) -> None:
    bad = tmp_path / ".gitlab-ci.yml"
    bad.write_text("test:\n  script: [make test]\n  rulez: []\n")
    with pytest.raises(AssertionError):
        schema("vendor.gitlab-ci", bad)


def extended(config: dict[str, Any], job: dict[str, Any], key: str) -> Any:
    """``job``'s ``key``, its own or from the jobs it extends (nearest first)."""
    while key not in job and "extends" in job:
        job = config[job["extends"]]
    return job.get(key)


def test_the_pipeline_keeps_gitlab_s_conventions(
    rendered_elsewhere: tuple[int, str, Path],
) -> None:
    """rules (never only/except) on every job, workflow:rules against duplicate
    pipelines, needs, the cache keyed on uv.lock, UV_LOCKED, interruptible checks,
    resource_group and environments on the deploy jobs, a manual production, images by
    full release, no credential in the file, and only the Makefile's targets."""
    level, project = gitlab_render(rendered_elsewhere)
    config = pipeline(project)
    found = jobs(config)
    real = {name: job for name, job in found.items() if not name.startswith(".")}
    caps = capabilities(level)
    expected = set(CHECKS) | {"serving-model", "serving-image"}
    expected |= {"train"} if caps["has_training_workflow"] else set()
    delivery = {"registry", "candidate", "release-image", "staging", "production"}
    expected |= delivery if caps["has_cd"] else set()
    expected |= {"monitor"} if caps["has_monitoring_workflow"] else set()
    assert set(real) == expected

    rules = config["workflow"]["rules"]
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in rules
    assert any(
        rule.get("when") == "never" and "CI_OPEN_MERGE_REQUESTS" in rule["if"] for rule in rules
    )
    assert config["variables"]["UV_LOCKED"] == "1"
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned and config["variables"]["UV_VERSION"] == pinned[1]
    assert config[".python"]["cache"]["key"] == {"files": ["uv.lock"]}

    targets = set(re.findall(r"^([a-z][a-z-]*):", (project / "Makefile").read_text(), re.M))
    for name, job in real.items():
        assert "only" not in job and "except" not in job, name
        assert extended(config, job, "rules"), f"{name} has no rules"
        for image in [extended(config, job, "image"), *(extended(config, job, "services") or [])]:
            if image:
                assert re.search(r":\d+\.\d+\.\d+", image) and "latest" not in image, image
        for variable in {**config["variables"], **(job.get("variables") or {})}:
            assert not CREDENTIAL.search(variable), f"{name} sets {variable} in the file"
        steps = [*(extended(config, job, "before_script") or []), *job.get("script", [])]
        invoked = r"(?:^|[;&|(]|\bthen|\bdo)\s*make\b([^;&|\n]*)"
        for command in re.findall(invoked, "\n".join(steps), re.M):
            words = shlex.split(command)
            used = {word for word in words if "=" not in word and not word.startswith("-")}
            assert used <= targets, f"{name} runs make{command}"
    for name in CHECKS:
        assert extended(config, real[name], "interruptible") is True, name
    if caps["has_training_workflow"]:
        changes = real["train"]["rules"][-1]["changes"]
        assert {"params.yaml", "dvc.yaml", "data/**/*.dvc"} <= set(changes)
        assert real["train"]["artifacts"]["reports"]["metrics"] == "reports/metrics.txt"
    if caps["has_cd"]:
        for name in ("staging", "production"):
            assert extended(config, real[name], "resource_group") == "deploy", name
            assert real[name]["environment"]["name"] == name
        assert real["production"]["rules"][0]["when"] == "manual"
        assert "staging" in real["production"]["needs"]


PYTHON_BLOCK = re.compile(r"<<'PY'[^\n]*\n(.*?)\nPY(?:\n|$)", re.S)


def test_every_job_s_shell_and_python_parse(rendered_elsewhere: tuple[int, str, Path]) -> None:
    """The jobs not run here (delivery, monitoring: they need GitLab, a registry, Docker
    in Docker) at least parse: each script section under `bash -n`, and each Python
    block it feeds to `python -` compiles."""
    _, project = gitlab_render(rendered_elsewhere)
    blocks = 0
    for name, job in jobs(pipeline(project)).items():
        for key in ("before_script", "script", "after_script"):
            steps = job.get(key) or []
            checked = subprocess.run(
                ["bash", "-n"], input="\n".join(steps), text=True, capture_output=True
            )
            assert checked.returncode == 0, (name, key, checked.stderr)
            for step in steps:
                for block in PYTHON_BLOCK.findall(step):
                    compile(block, f"{name} {key}", "exec")
                    blocks += 1
    assert blocks or not capabilities(rendered_elsewhere[0])["has_training_workflow"]


def test_renovate_groups_each_ecosystem(rendered_elsewhere: tuple[int, str, Path]) -> None:
    level, project = gitlab_render(rendered_elsewhere)
    config = json.loads((project / "renovate.json").read_text())
    managers = {manager for rule in config["packageRules"] for manager in rule["matchManagers"]}
    expected = {"pep621", "gitlabci", "gitlabci-include"}
    expected |= {"dockerfile"} if capabilities(level)["has_container"] else set()
    assert managers == expected
    assert all(rule["groupName"] for rule in config["packageRules"])
    assert config["minimumReleaseAge"] == "7 days"


def test_make_maturity_checks_the_gitlab_files(
    rendered_elsewhere: tuple[int, str, Path], tmp_path: Path
) -> None:
    level, project = gitlab_render(rendered_elsewhere)
    if not capabilities(level)["has_training_workflow"]:
        pytest.skip("checks the training job's file")

    def training() -> dict[str, Any]:
        result = json.loads(assessed(project, "--json", check=False).stdout)
        return next(c for c in result["capabilities"] if c["capability"] == "has_training_workflow")

    assert training()["ok"], training()
    path = project / ".gitlab" / "ci" / "train.gitlab-ci.yml"
    kept = path.read_text()
    path.unlink()
    try:
        found = training()
    finally:
        path.write_text(kept)
    assert not found["ok"] and found["detail"] == "missing: .gitlab/ci/train.gitlab-ci.yml"


def runner_checkout_of(render: Render, name: str, capability: str, scratch: Path) -> Path:
    """The lowest built level with ``capability``, as a GitLab user commits it (rendered,
    `make install` writing the uv.lock the jobs install from, all committed), in a
    runner's fresh checkout; skipped when no such level is selected."""
    level = lowest_built_level_with(capability)
    if level is None:
        pytest.skip(f"no built level with {capability} is selected")
    path = render(name, maturity_level=level, ci_provider="gitlab")
    run(["make", "install"], path, user_env(), timeout=900)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate the project")
    return runner_checkout(path, scratch)


@pytest.mark.slow
@pytest.mark.parametrize("ci_provider", GITLAB)
def test_the_level_1_pipeline_runs_here_and_a_lint_error_fails_it(
    render: Render, tmp_path: Path, ci_provider: str
) -> None:
    checkout = runner_checkout_of(render, "gitlab-checks", "has_ci", tmp_path)
    result = run_jobs(checkout, CHECKS, tmp_path)
    assert result.returncode == 0, str(result)
    assert verdicts(result) == dict.fromkeys(CHECKS, "PASS"), str(result)

    planted = checkout / "src" / "tabular_classifier" / "planted.py"
    planted.write_text('"""A module with an unused import."""\n\nimport os\n')
    git(checkout, "add", "--all")
    git(checkout, "commit", "--quiet", "--message", "A lint error")
    failed = run_jobs(checkout, ["lint"], tmp_path)
    assert failed.returncode != 0, str(failed)
    assert verdicts(failed) == {"lint": "FAIL"}, str(failed)
    # The ruff hook failed, and shows the fix it wants: the import gone.
    assert re.search(r"ruff check\.+Failed", failed.stdout), str(failed)
    assert "-import os" in failed.stdout, str(failed)


def job_list(checkout: Path, tmp_path: Path) -> dict[str, str]:
    """gitlab-ci-local --list: each job that would run and when."""
    listed = run_jobs(checkout, [], tmp_path, "--list-all")
    assert listed.returncode == 0, str(listed)
    rows = [line.split() for line in listed.stdout.splitlines()]
    header = next(index for index, row in enumerate(rows) if row[:1] == ["name"])
    return {row[0]: row[2] for row in rows[header + 1 :] if len(row) >= 3}


@pytest.mark.slow
@pytest.mark.parametrize("ci_provider", GITLAB)
def test_the_training_job_runs_when_params_change_and_registers(
    render: Render, tmp_path: Path, ci_provider: str
) -> None:
    checkout = runner_checkout_of(render, "gitlab-train", "has_training_workflow", tmp_path)
    assert job_list(checkout, tmp_path)["train"] == "never", "nothing the pipeline reads changed"

    params = checkout / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 200", "n_estimators: 150"))
    git(checkout, "commit", "--quiet", "--all", "--message", "Fewer trees")
    assert job_list(checkout, tmp_path)["train"] == "on_success"
    # As in a merge request's pipeline with the project's token set: the job posts its
    # report as a note on the merge request, to GitLab's API (a recorder here).
    api = ApiRecorder()
    merge_request = ["--variable", "CI_MERGE_REQUEST_IID=7", "--variable", "CI_PROJECT_ID=42"]
    merge_request += ["--variable", f"CI_API_V4_URL={api.url}"]
    merge_request += ["--variable", "PROJECT_TOKEN=project-token-for-tests"]
    try:
        result = run_jobs(checkout, ["train"], tmp_path, *merge_request)
    finally:
        api.stop()
    assert result.returncode == 0 and verdicts(result) == {"train": "PASS"}, str(result)
    (note,) = api.requests
    assert note["path"] == "/api/v4/projects/42/merge_requests/7/notes"
    assert note["headers"]["private-token"] == "project-token-for-tests"
    assert "| train.n_estimators   | 150" in note["body"]["body"]
    assert re.search(r"register: tabular-classifier version 1 \(run \w+\)", result.stdout)
    assert "| train.n_estimators   | 150" in result.stdout, "the report of what changed"
    metrics = json.loads((checkout / "reports" / "metrics.json").read_text())
    widget = dict(
        line.split() for line in (checkout / "reports" / "metrics.txt").read_text().splitlines()
    )
    assert {name: float(value) for name, value in widget.items()} == metrics


@pytest.mark.slow
@pytest.mark.parametrize("ci_provider", GITLAB)
def test_a_github_project_switches_to_gitlab_keeping_the_user_s_edits(
    render: Render, ci_provider: str
) -> None:
    level = lowest_built_level_with("has_cd") or lowest_built_level_with("has_ci")
    if level is None:
        pytest.skip("no built level with CI is selected")
    path = render("switch", maturity_level=level)
    assert (path / ".github" / "workflows" / "ci.yml").is_file()
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate the project")
    readme = path / "README.md"
    readme.write_text(readme.read_text() + "\nOur team's notes.\n")
    (path / "notes.md").write_text("Ours.\n")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "User edits")

    update_project(path, ci_provider="gitlab")

    assert not (path / ".github").exists(), sorted(p.name for p in (path / ".github").rglob("*"))
    assert "Our team's notes." in readme.read_text()
    assert (path / "notes.md").read_text() == "Ours.\n"
    schema("vendor.gitlab-ci", *ci_files(path))
    answers = yaml.safe_load((path / ".copier-answers.yml").read_text())
    assert answers["ci_provider"] == "gitlab"
    assert "<<<<<<<" not in readme.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("ci_provider", GITLAB)
def test_climbing_keeps_a_variable_the_user_added_to_the_pipeline(
    render: Render, ci_provider: str
) -> None:
    levels = [level for level in selected_levels(built_only=True) if capabilities(level)["has_ci"]]
    if len(levels) < 2:
        pytest.skip("needs two built levels with CI")
    low, high = levels[0], levels[-1]
    path = render("gitlab-climb", maturity_level=low, ci_provider="gitlab")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate the project")
    root = path / ".gitlab-ci.yml"
    text = root.read_text()
    assert '  UV_LOCKED: "1"\n' in text
    root.write_text(
        text.replace('  UV_LOCKED: "1"\n', '  UV_LOCKED: "1"\n  TEAM_QUEUE: ml-runners\n')
    )
    git(path, "commit", "--quiet", "--all", "--message", "Our runners' queue")
    for level in range(low + 1, high + 1):
        update_project(path, maturity_level=level)
        git(path, "add", "--all")
        git(path, "commit", "--quiet", "--message", f"Climb to level {level}")
        config = pipeline(path)
        assert config["variables"]["TEAM_QUEUE"] == "ml-runners", level
        assert "<<<<<<<" not in root.read_text(), level
    schema("vendor.gitlab-ci", *ci_files(path))
    assert {"train", "staging", "production", "monitor"} <= set(jobs(pipeline(path)))


def test_the_ci_matrix_reads_the_providers_and_a_provider_s_cell_runs_only_its_tests(
    tmp_path: Path,
) -> None:
    """scripts/levels.py gives the matrix copier.yml's providers; a cell with
    CI_PROVIDERS=gitlab collects only the tests that take a provider, for that one."""
    printed = run([sys.executable, "scripts/levels.py"], ROOT).stdout.splitlines()
    offered = yaml.safe_load((ROOT / "copier.yml").read_text())["ci_provider"]["choices"]
    assert f"providers={json.dumps(list(offered.values()))}" in printed
    env = {**os.environ, "CI_PROVIDERS": "gitlab", "LEVELS": "2"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += [f"--basetemp={tmp_path / 'collect'}", "tests/test_render.py", __file__]
    collected = run(command, ROOT, env).stdout
    ids = [line for line in collected.splitlines() if "::" in line]
    assert ids and all("gitlab" in line for line in ids), collected
    assert any(
        "test_each_ci_provider_gets_exactly_its_own_files[level-2-gitlab]" in line for line in ids
    )


def test_a_gitlab_project_speaks_of_its_own_ci(rendered_elsewhere: tuple[int, str, Path]) -> None:
    """The GUIDE names the GitLab files and words, and no file names GitHub's."""
    level, project = gitlab_render(rendered_elsewhere)
    guide = (project / "GUIDE.md").read_text()
    assert "`.gitlab-ci.yml`" in guide and "merge request" in guide
    mentions = [
        name
        for name in text_files(project) - {".ladder.json"}  # the ladder: every provider's
        if ".github/" in (project / name).read_text(encoding="utf-8")
    ]
    assert not mentions, mentions
    for name in ("train", "deploy", "monitor"):
        file = f".gitlab/ci/{name}.gitlab-ci.yml"
        assert (file in guide) == (project / file).is_file(), (level, file)

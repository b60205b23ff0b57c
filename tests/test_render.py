"""Every level renders exactly the files its capabilities claim, all of them valid."""

from __future__ import annotations

import fnmatch
import graphlib
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from mlops_harness.imports import import_graph
from mlops_harness.ladder import capabilities, dataset_named, default_provider, ladder
from mlops_harness.locks import pinned_versions
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import run
from mlops_harness.promtool import prometheus_tool, promtool
from mlops_harness.rendering import PICTURES, Render, rendered_files, text_files

pytestmark = pytest.mark.xdist_scope("test")

TEMPLATE = ROOT / "template"


def claimed(path: str, patterns: tuple[str, ...], package: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern.format(package=package)) for pattern in patterns)


def assert_exactly_the_files(level: int, project: Path, provider: str) -> None:
    """The files of ``level``'s capabilities, with ``provider``'s CI files: no fewer, no
    more, and none of another provider's."""
    files = rendered_files(project)
    package = "tabular_classifier"
    enabled = [cap for cap in ladder().CAPABILITIES if cap.level <= level]
    disabled = [cap for cap in ladder().CAPABILITIES if cap.level > level]

    unclaimed = {
        path
        for path in files
        if not any(claimed(path, cap.files(provider), package) for cap in enabled)
    }
    assert not unclaimed, f"rendered but claimed by no capability of level {level} ({provider})"

    for cap in enabled:
        for pattern in cap.files(provider):
            assert any(fnmatch.fnmatch(path, pattern.format(package=package)) for path in files), (
                f"{cap.name} (level {cap.level}) claims {pattern}, which level {level} lacks"
            )
    for cap in disabled:
        leaked = {path for path in files if claimed(path, cap.files(provider), package)}
        assert not leaked, f"{cap.name} belongs to level {cap.level}, not {level}"


def test_exactly_the_files_of_the_level_s_capabilities(rendered: tuple[int, Path]) -> None:
    level, project = rendered
    assert_exactly_the_files(level, project, default_provider())


def test_each_ci_provider_gets_exactly_its_own_files(
    rendered_elsewhere: tuple[int, str, Path],
) -> None:
    level, provider, project = rendered_elsewhere
    assert_exactly_the_files(level, project, provider)


# Who owns what (the GUIDE's section of that name): the stage modules at the package's
# top are the user's, short enough to read in one sitting; every module under mlops/ and
# serving/ is the template's, and its first line says so.
OWNERSHIP_LINE = "# Template-owned: `copier update` brings its new versions."
USER_MODULE_LINES = 250
USER_MODULES = {"__init__", "ingest", "features", "train", "evaluate", "predict", "routes"}


def test_the_user_s_modules_are_short_and_the_template_s_say_they_are_its(
    rendered: tuple[int, Path],
) -> None:
    _, project = rendered
    package = project / "src" / "tabular_classifier"
    yours = {path.stem: path for path in package.glob("*.py")}
    assert set(yours) == USER_MODULES, sorted(set(yours) ^ USER_MODULES)
    lines = {name: len(path.read_text().splitlines()) for name, path in yours.items()}
    assert max(lines.values()) <= USER_MODULE_LINES, lines
    assert not [name for name, path in yours.items() if OWNERSHIP_LINE in path.read_text()]
    theirs = [*package.glob("mlops/**/*.py"), *package.glob("serving/**/*.py")]
    unmarked = [
        str(path.relative_to(package))
        for path in theirs
        if not path.read_text().startswith(OWNERSHIP_LINE)
    ]
    assert theirs and not unmarked, f"modules of the template's without its line: {unmarked}"


def test_the_package_has_no_import_circle_and_the_monitors_no_service_import(
    rendered: tuple[int, Path],
) -> None:
    _, project = rendered
    name = "tabular_classifier"
    graph = import_graph(project / "src" / name, name)
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"an import circle: {' -> '.join(error.args[1])}")
    # The batch monitors read the service's logs, never its code, not even through another
    # module (make simulate, the service's client, reads the service's keys as it does).
    monitors = ("drift", "logs", "monitor", "publish", "retrain", "verdict", "window")
    reached = {f"{name}.mlops.{module}" for module in monitors} & set(graph)
    todo = list(reached)
    while todo:
        for other in graph[todo.pop()] - reached:
            reached.add(other)
            todo.append(other)
    assert not sorted(module for module in reached if module.startswith(f"{name}.serving"))


def test_no_template_syntax_survives(rendered: tuple[int, Path]) -> None:
    _, project = rendered
    for name in text_files(project):
        text = (project / name).read_text(encoding="utf-8")
        # Meant to be there: GitHub Actions' ${{ }}, Prometheus' {{ $labels.x }} in alert
        # annotations and Grafana's {{label}} in legends. Jinja's own {{ x }} and {% are not.
        leftover = r"(?<!\$)\{\{(?!\s*\$|[A-Za-z_]+\}\})|\{%|\{#"
        assert not re.search(leftover, text), f"template syntax left in {name}"


def test_every_file_parses(rendered: tuple[int, Path]) -> None:
    _, project = rendered
    for name in text_files(project):
        path = project / name
        text = path.read_text(encoding="utf-8")
        if name.endswith((".yml", ".yaml")) or name == ".copier-answers.yml":
            yaml.safe_load(text)
        elif name.endswith(".toml"):
            tomllib.loads(text)
        elif name.endswith((".json", ".ipynb")):
            json.loads(text)
        elif name.endswith(".py"):
            compile(text, name, "exec")
        assert text.endswith("\n") or not text, f"{name} does not end with a newline"


def test_the_level_is_compared_only_in_the_capability_table() -> None:
    raw = re.compile(r"maturity_level\s*(==|!=|>=|<=|>|<)|(==|!=|>=|<=|>|<)\s*maturity_level")
    for path in TEMPLATE.rglob("*"):
        assert not raw.search(str(path.relative_to(TEMPLATE))), path
        if path.is_file() and not path.name.endswith(PICTURES):
            assert not raw.search(path.read_text(encoding="utf-8")), path


def test_every_capability_name_is_used_where_it_is_defined() -> None:
    """Names in templates come from the table, so a typo cannot silently be false."""
    names = {cap.name for cap in ladder().CAPABILITIES}
    used: set[str] = set()
    for path in TEMPLATE.rglob("*"):
        text = str(path.relative_to(TEMPLATE))
        if path.is_file() and not path.name.endswith(PICTURES):
            text += path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bhas_[a-z_]+", text))
    assert used <= names, f"unknown capability names: {sorted(used - names)}"


@pytest.mark.parametrize(
    "answers",
    [
        {"dataset": "wine"},
        {"dataset": "iris"},
        {"dataset": "diabetes"},
        {"dataset": "penguins"},
        {"dataset": "own", "data_source": "data/external/loans.csv", "target_column": "Loan St"},
        {"package_name": "a" * 30, "project_slug": "b" * 50},
        {"python_version": "3.13", "license": "Apache-2.0"},
        {"license": "BSD-3-Clause"},
        {"license": "Proprietary"},
        {"dvc_remote": "s3://team-bucket/dvc"},
        {"dvc_remote": "/srv/dvc-storage"},
    ],
    ids=lambda answers: ",".join(f"{k}={str(v)[:10]}" for k, v in answers.items()),
)
def test_variants_render_lint_clean_code(render: Render, answers: dict[str, str]) -> None:
    """The top built level, with other answers: ruff finds nothing to fix or reformat."""
    level = max(level.number for level in ladder().LEVELS if level.built)
    project = render("variant", maturity_level=level, **answers)
    run([tool("ruff"), "check", "--no-cache", "."], project)
    run([tool("ruff"), "format", "--check", "--no-cache", "."], project)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={answers.get('python_version', '3.11')}"
    contract = (project / "data" / "contract.yaml").read_text()
    if answers.get("dataset") == "own":  # a contract for `make contract` to fill in
        seed = yaml.safe_load(contract)
        assert seed == {"source": answers["data_source"], "target": {"column": "Loan St"}}
        assert "make contract" in (project / "GUIDE.md").read_text()
    else:
        shipped = dataset_named(answers.get("dataset", "breast_cancer")).contract_file
        assert contract == shipped.read_text()
    slug = answers.get("project_slug", "tabular-classifier")
    expected = answers.get("dvc_remote", f"../{slug}-dvc-storage")
    if not expected.startswith(("/", "s3://")):
        expected = "../" + expected  # .dvc/config resolves relative paths from .dvc/
    assert f"url = {expected}\n" in (project / ".dvc" / "config").read_text()
    # An object store needs DVC's plugin for it, which the dvc extra of its scheme brings.
    extra = {"s3://": "dvc[s3]"}.get(expected[:5], "dvc")
    assert f"{extra}==" in " ".join(map(str, pyproject["dependency-groups"]["dev"]))


def test_every_level_renders_lint_clean_code(rendered: tuple[int, Path]) -> None:
    """Ruff with the project's settings where it has them, the same rules where not."""
    level, project = rendered
    settings = ["--no-cache"]  # the render is shared: leave no files behind
    if not capabilities(level)["has_precommit"]:
        settings += ["--isolated", "--line-length", "100"]
        run([tool("ruff"), "check", *settings, "--select", "E,W,F,I,B,UP,SIM,RUF", "."], project)
    else:
        run([tool("ruff"), "check", *settings, "."], project)
    run([tool("ruff"), "format", "--check", *settings, "."], project)


def test_the_team_server_is_the_version_of_the_project_s_mlflow_client(
    rendered: tuple[int, Path],
) -> None:
    """deploy/mlflow pins the server at the mlflow-skinny version the project pins."""
    level, project = rendered
    requirements = project / "deploy" / "mlflow" / "requirements.txt"
    if not capabilities(level)["has_team_server"]:
        assert not requirements.exists()
        return
    client = pinned_versions(project, dev=False)["mlflow-skinny"]
    pins = re.findall(r"^mlflow\[auth\]==(\S+)", requirements.read_text(), re.MULTILINE)
    assert pins == [client]


def test_the_operations_stack_s_configs_pass_promtool_and_amtool(
    rendered: tuple[int, Path], tmp_path: Path
) -> None:
    """`make observe`'s configs (monitoring/prometheus/prometheus.yml, and at level 4
    monitoring/alertmanager/alertmanager.yml, and the rules) pass Prometheus' and
    Alertmanager's own checkers. (test_operations checks the ones `make observe` writes.)"""
    level, project = rendered
    caps = capabilities(level)
    monitoring = project / "monitoring"
    if not caps["has_observe_stack"]:
        assert not monitoring.exists()
        return
    assert (monitoring / "alertmanager" / "alertmanager.yml").exists() == caps["has_alerting"]
    prometheus = monitoring / "prometheus" / "prometheus.yml"
    checks = [[str(promtool()), "check", "config", str(prometheus)]]
    if caps["has_alerting"]:
        alertmanager = monitoring / "alertmanager" / "alertmanager.yml"
        checks.append([str(prometheus_tool("amtool")), "check-config", str(alertmanager)])
    for check in checks:
        run(check, project)


def test_secret_files_are_git_ignored(rendered: tuple[int, Path]) -> None:
    _, project = rendered
    for name in (".env", ".env.production", "deploy.pem", "service.key", ".dvc/config.local"):
        assert (
            run(["git", "check-ignore", "--no-index", name], project, check=False).returncode == 0
        ), name


def test_the_user_s_data_files_are_git_ignored_but_their_pointers_are_not(
    rendered: tuple[int, Path],
) -> None:
    """A file copied into data/external/ (as docs/your-data.md says) never enters git by
    `git add --all`; its DVC pointer and the folder's .gitkeep do."""
    _, project = rendered

    def ignored(name: str) -> bool:
        found = run(["git", "check-ignore", "--no-index", name], project, check=False)
        return found.returncode == 0

    assert ignored("data/external/loans.csv") and ignored("data/external/loans.parquet")
    assert not ignored("data/external/loans.csv.dvc") and not ignored("data/external/.gitkeep")


def test_a_fresh_copy_is_staged_and_lint_refuses_a_tree_git_does_not_track(
    render: Render,
) -> None:
    """Copier's first copy stages the project's files (not committed: that is the user's),
    so the hooks check real files; with nothing tracked, `make lint` refuses, rather than
    pass having checked nothing."""
    project = render("staged", maturity_level=1)
    staged = run(["git", "diff", "--cached", "--name-only"], project).stdout.split()
    assert {"Makefile", "GUIDE.md", ".pre-commit-config.yaml"} <= set(staged)
    run(["git", "rm", "-r", "--cached", "--quiet", "."], project)
    refused = run(["make", "lint"], project, check=False)
    assert refused.returncode != 0 and "git tracks no file yet" in refused.stderr, refused


def test_the_guide_walks_through_the_manual_process_until_a_pipeline_runs_it(
    rendered: tuple[int, Path],
) -> None:
    level, project = rendered
    readme = (project / "GUIDE.md").read_text()
    caps = capabilities(level)
    package = "tabular_classifier"
    stages = [f"python -m {package}.{stage}" for stage in ("features", "train", "evaluate")]
    manual = [
        f"python -m {package}.ingest",
        "dvc add data",
        *stages,
        "dvc add models",
        "make serve",
    ]
    if caps["has_pipeline"]:
        assert "## The pipeline" in readme and "dvc repro" in readme
    else:
        assert "## The process, step by step" in readme
        steps = readme[readme.index("## The process") :]
        positions = [steps.index(step) for step in manual]
        assert positions == sorted(positions), "the steps are out of order"
    assert ("Nothing runs it for you" in readme) == (not caps["has_ci"])


def test_template_blocks_leave_tidy_whitespace(rendered: tuple[int, Path]) -> None:
    """Jinja's whitespace control is easy to get wrong: no doubled blank lines outside
    Python, a blank line before every Markdown heading and every Makefile target."""
    _, project = rendered
    for name in text_files(project):
        text = (project / name).read_text(encoding="utf-8")
        if not name.endswith((".py", ".ipynb", "LICENSE")):
            assert "\n\n\n" not in text, f"two blank lines in a row in {name}"
        lines = text.splitlines()
        for number, line in enumerate(lines[1:], start=1):
            before = lines[number - 1]
            if name.endswith(".md") and line.startswith("#") and not before.startswith("```"):
                in_code = text[: text.find(line)].count("```") % 2 == 1
                assert in_code or before == "", f"{name}:{number + 1} heading without a blank line"
            if name == "Makefile" and line.startswith(".PHONY") and not before.startswith("#"):
                assert before == "", f"Makefile:{number + 1} target without a blank line"

"""The maturity ladder, decided once.

Copier loads this file as a Jinja extension (``_jinja_extensions`` in ``copier.yml``).
Its one hook turns the ``maturity_level`` answer into named capabilities
(``has_ci``, ``has_pipeline``, ...) from the table below. Templates, file names,
tests and docs use those names; nothing else compares the level number.

Keep this file self-contained: Copier does not put the extensions folder on
``sys.path`` during ``update`` (copier-org/copier#2557), so it imports nothing of ours.
The template's tests load it by path and read the same tables.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from copier_template_extensions import ContextHook


@dataclass(frozen=True)
class Level:
    number: int
    name: str  # the Azure MLOps maturity model's name for it
    google: str  # the matching level of Google's model, where there is one
    summary: str
    built: bool  # every capability of the level is in the template (else: still to come)


# fmt: off
LEVELS: tuple[Level, ...] = (
    Level(0, "No MLOps", "Level 0: manual process",
          "notebooks and scripts run by hand; the model is handed off as a file", True),
    Level(1, "DevOps but no MLOps", "(level 0 with CI)",
          "code is tested and linted in CI, the serving image is built; training is manual",
          True),
    Level(2, "Automated training", "Level 1: ML pipeline automation",
          "reproducible DVC pipeline, tracked experiments, model registry, data and model "
          "validation", True),
    Level(3, "Automated model deployment", "Level 1 + continuous delivery",
          "validated models are promoted and deployed by CD, served with metrics and A/B, "
          "traceable", True),
    Level(4, "Full MLOps automated operations", "Level 2: CI/CD pipeline automation",
          "drift and decay monitoring, alerts, automatic retraining, audit trail", True),
)
# fmt: on


@dataclass(frozen=True)
class Capability:
    """One named capability of a generated project.

    ``paths`` are the generated project's files that exist only because of this
    capability (fnmatch patterns, ``*`` crosses folders; ``{package}`` is the Python
    package name); ``ci`` adds, for each answer to ``ci_provider``, the files that
    provider's projects have for it. The template's tests derive the exact file set of
    every level and provider from them, so a file the template renders must be claimed
    here.
    """

    name: str
    level: int  # the lowest level that has it
    summary: str
    paths: tuple[str, ...] = ()
    ci: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def files(self, provider: str) -> tuple[str, ...]:
        """Its files in a project whose CI runs on ``provider``."""
        return (*self.paths, *self.ci.get(provider, ()))


# fmt: off
CAPABILITIES: tuple[Capability, ...] = (
    # Level 0: the manual process.
    Capability("has_project_files", 0,
               "README (yours), level guide (the template's), Makefile, pinned pyproject, params,"
               " licence", (
        ".copier-answers.yml", ".gitignore", ".python-version", "GUIDE.md", "LICENSE", "Makefile",
        "README.md", "params.yaml", "pyproject.toml",
    )),
    Capability("has_self_assessment", 0,
               "`make maturity`: where the project stands, what the next level adds", (
        ".ladder.json", "src/{package}/mlops/maturity.py",
    )),
    Capability("has_components", 0,
               "one module per stage, each a typed pure function plus a thin CLI", (
        "src/{package}/__init__.py", "src/{package}/mlops/__init__.py",
        "src/{package}/mlops/config.py", "src/{package}/mlops/schema.py", "src/{package}/ingest.py",
        "src/{package}/features.py", "src/{package}/train.py",
        "src/{package}/evaluate.py", "src/{package}/predict.py", "src/{package}/py.typed",
    )),
    Capability("has_data_contract", 0,
               "one data contract names the data; `make contract` infers it from a file", (
        "data/contract.yaml", "src/{package}/mlops/contract.py", "src/{package}/mlops/frames.py",
        "src/{package}/mlops/sources.py", "src/{package}/mlops/scan.py",
        "src/{package}/mlops/infer_contract.py",
        "src/{package}/mlops/suspects.py",
    )),
    Capability("has_both_tasks", 0, "classification (text labels) and regression alike"),
    Capability("has_data_versioning", 0, "data layout, DVC initialised, a local DVC remote", (
        ".dvc/config", ".dvc/.gitignore", ".dvcignore", "data/external/.gitkeep",
        "data/raw/.gitkeep", "data/interim/.gitkeep", "data/processed/.gitkeep",
        "models/.gitkeep", "reports/.gitkeep",
    )),
    Capability("has_notebook", 0, "an exploration notebook that imports the package", (
        "notebooks/01-exploration.ipynb",
    )),
    Capability("has_serving", 0, "FastAPI prediction service: POST /predict, GET /health", (
        "src/{package}/serving/__init__.py", "src/{package}/serving/__main__.py",
        "src/{package}/serving/app.py", "src/{package}/serving/deps.py",
        "src/{package}/serving/lifecycle.py",
        "src/{package}/serving/settings/__init__.py", "src/{package}/serving/routes/__init__.py",
        "src/{package}/serving/routes/health.py", "src/{package}/serving/routes/predict.py",
        "src/{package}/routes.py",
    )),
    # Level 1: DevOps, no MLOps.
    Capability("has_tests", 1, "a pytest suite for every component and the service", (
        "tests/*",
    )),
    Capability("has_precommit", 1, "pre-commit: ruff, hygiene hooks, secret scan, hadolint", (
        ".pre-commit-config.yaml",
    )),
    Capability("has_ci", 1, "CI on every push and pull or merge request: lint, types, tests,"
               " image; dependency updates, grouped (Dependabot or Renovate)", ci={
        "github": (".github/workflows/ci.yml", ".github/dependabot.yml"),
        "gitlab": (".gitlab-ci.yml", "renovate.json"),
    }),
    Capability("has_container", 1, "Dockerfile for the service: non-root, healthcheck", (
        "Dockerfile", ".dockerignore",
    )),
    Capability("has_scripted_ingest", 1, "ingest from a configurable source, repeatable"),
    Capability("has_request_logs", 1, "one JSON log line per request; strict input checks;"
               " byte caps, body timeout, JSON only, optional bearer keys", (
        "src/{package}/serving/request_log.py", "src/{package}/serving/guard.py",
        "src/{package}/serving/settings/guard.py",
    )),
    # Level 2: automated training.
    Capability("has_pipeline", 2, "DVC pipeline: one stage per module, params, metrics, plots", (
        "dvc.yaml", "src/{package}/mlops/plots.py",
    )),
    Capability("has_data_validation", 2, "pandera schema stage that stops bad data", (
        "src/{package}/mlops/validate.py", "tests/test_validate.py",
    )),
    Capability("has_tracking", 2, "MLflow tracking: params, metrics, plots, commit, data hash", (
        "src/{package}/mlops/tracking.py", "tests/test_tracking.py",
    )),
    Capability("has_registry", 2, "every gated run registers a version with lineage tags", (
        "src/{package}/mlops/register.py", "src/{package}/mlops/registered.py",
        "src/{package}/mlops/params.py", "src/{package}/serving/settings/registry.py",
        "tests/test_register.py",
    )),
    Capability("has_model_gate", 2, "beat the trivial baseline by a margin before registering"),
    Capability("has_training_workflow", 2, "CI workflow that runs and pushes the pipeline", ci={
        "github": (".github/workflows/train.yml",),
        "gitlab": (".gitlab/ci/train.gitlab-ci.yml",),
    }),
    Capability("has_team_server", 2, "a team MLflow server's image: PostgreSQL, an object store,"
               " basic auth", (
        "deploy/mlflow/*",
    )),
    Capability("has_kfp", 2, "the pipeline's stages as Kubeflow Pipelines components: compile,"
               " run locally, submit", (
        "src/{package}/pipelines/*", "tests/test_pipelines.py", "deploy/training/Dockerfile",
    )),
    # Level 3: automated model deployment.
    Capability("has_reference_profile", 3, "training reference profile for drift checks", (
        "src/{package}/mlops/profile.py", "tests/test_profile.py",
    )),
    Capability("has_promotion", 3, "champion/challenger promotion by margin", (
        "src/{package}/mlops/promote.py", "tests/test_promote.py",
    )),
    Capability("has_model_card", 3, "a model card per registered version", (
        "src/{package}/mlops/card.py", "tests/test_card.py",
    )),
    Capability("has_fast_serving", 3,
               "the model converted to ONNX, gated on parity, served without DataFrames", (
        "src/{package}/mlops/export.py", "src/{package}/serving/runtime.py",
        "tests/test_export.py",
    )),
    Capability("has_traceable_serving", 3, "serves the champion; GET /version and /ready", (
        "src/{package}/serving/routes/version.py", "src/{package}/serving/loading.py",
        "src/{package}/serving/settings/champion.py",
        "tests/test_candidate.py",
    )),
    Capability("has_ab_testing", 3, "a share of traffic to the challenger, sticky by key", (
        "src/{package}/serving/variants.py", "src/{package}/serving/settings/ab.py",
    )),
    Capability("has_service_metrics", 3, "Prometheus /metrics and a prediction log", (
        "src/{package}/serving/metrics.py", "src/{package}/serving/prediction_log.py",
        "src/{package}/serving/observability.py", "src/{package}/serving/settings/observability.py",
        "src/{package}/mlops/logs.py",
        "tests/test_service_metrics.py",
    )),
    Capability("has_observe_stack", 3, "`make observe`: a local Prometheus scraping the service"
               " (with Alertmanager, the rules and a Pushgateway at level 4)", (
        "monitoring/prometheus/prometheus.yml", "src/{package}/mlops/observe.py",
    )),
    Capability("has_log_shipping", 3, "the logs' sealed files shipped to an object store"
               " (S3 or a folder), exactly once; the monitors read them there", (
        "src/{package}/serving/shipping.py", "src/{package}/serving/settings/shipping.py",
        "src/{package}/mlops/store.py", "tests/test_shipping.py",
    )),
    Capability("has_kubernetes", 3,
               "kustomize base and overlays: Deployment, Service, HPA, NetworkPolicy", (
        "deploy/kubernetes/*",
    )),
    Capability("has_cd", 3, "CD workflow and `make deploy`: staging, then production", (
        "src/{package}/mlops/deploy.py", "tests/test_deploy.py",
    ), ci={
        "github": (".github/workflows/deploy.yml",),
        "gitlab": (".gitlab/ci/deploy.gitlab-ci.yml",),
    }),
    # Level 4: full automated operations.
    Capability("has_drift_detection", 4,
               "per-feature and prediction drift of the served traffic: JSON, HTML, metrics", (
        "src/{package}/mlops/drift/*", "src/{package}/mlops/monitor.py",
        "src/{package}/mlops/window.py", "src/{package}/mlops/verdict.py",
        "src/{package}/mlops/publish.py",
        "src/{package}/mlops/simulate.py", "src/{package}/pipelines/drift.py",
        "tests/test_drift.py", "tests/test_monitor.py",
    )),
    Capability("has_decay_monitoring", 4,
               "performance on delayed ground truth (POST /feedback: keyed, served rows, once)", (
        "src/{package}/serving/routes/feedback.py", "src/{package}/serving/ledger.py",
        "src/{package}/serving/settings/feedback.py",
    )),
    Capability("has_alerting", 4, "Prometheus alert rules with their unit tests, Alertmanager,"
               " a dashboard", (
        "monitoring/prometheus/alerts.yml", "monitoring/prometheus/alerts.test.yml",
        "monitoring/alertmanager/*", "monitoring/grafana/*", "monitoring/pictures/*",
    )),
    Capability("has_retraining", 4, "drift or decay retrains, bounded by a cool-down", (
        "src/{package}/mlops/retrain.py", "data/feedback/.gitkeep", "tests/test_retrain.py",
    )),
    Capability("has_monitoring_workflow", 4, "scheduled monitoring workflow", ci={
        "github": (".github/workflows/monitor.yml",),
        "gitlab": (".gitlab/ci/monitor.gitlab-ci.yml",),
    }),
    Capability("has_hot_reload", 4, "zero-downtime reload when the champion moves", (
        "src/{package}/serving/reload.py", "src/{package}/serving/settings/reload.py",
        "tests/test_reload.py",
    )),
    Capability("has_audit_trail", 4, "a hash-chained trail of promotions and deployments", (
        "src/{package}/mlops/audit.py", "tests/test_audit.py",
    )),
)
# fmt: on


@dataclass(frozen=True)
class Dataset:
    """A real tabular dataset that a dependency ships, so no network is needed. Its data
    contract, ``extensions/contracts/<name>.yaml``, is what the generated project's own
    ``make contract`` infers from it (``scripts/contracts.py`` writes and checks them)."""

    name: str
    summary: str
    task: str  # classification or regression
    target: str  # the column to predict, as the source spells it
    requirement: str = ""  # the pinned package that ships it, beyond scikit-learn

    @property
    def source(self) -> str:
        return f"bundled:{self.name}"

    @property
    def contract_file(self) -> Path:
        return Path(__file__).resolve().parent / "contracts" / f"{self.name}.yaml"


# fmt: off
DATASETS: tuple[Dataset, ...] = (
    Dataset("breast_cancer",
            "Wisconsin diagnostic breast cancer: 569 tumours, 30 measurements, benign or "
            "malignant (scikit-learn)", "classification", "target"),
    Dataset("wine", "Wine recognition: 178 wines, 13 chemical measurements, three cultivars "
            "(scikit-learn)", "classification", "target"),
    Dataset("iris", "Fisher's iris: 150 flowers, 4 measurements, three species (scikit-learn)",
            "classification", "target"),
    Dataset("diabetes", "Diabetes: 442 patients, 10 measurements, disease progression a year "
            "later, a number to predict (scikit-learn)", "regression", "target"),
    Dataset("penguins", "Palmer penguins: 344 penguins, numbers and categories with missing "
            "values, three species as text labels (palmerpenguins, CC0 data)",
            "classification", "species", "palmerpenguins==0.1.6"),
)
# fmt: on
OWN_DATA = "own"  # the answer for the user's own file: its contract comes from `make contract`


# The base image of the serving container, pinned to a full release per Python version.
BASE_IMAGES: dict[str, str] = {
    "3.11": "python:3.11.14-slim-bookworm",
    "3.12": "python:3.12.12-slim-bookworm",
    "3.13": "python:3.13.9-slim-bookworm",
}


# How the GUIDE speaks of each CI provider (the answer to ``ci_provider``); its files are
# the capabilities' ``ci`` paths (see ci_context).
CI_WORDS: dict[str, dict[str, str]] = {
    "github": {
        "name": "GitHub Actions",
        "settings": "repository secrets",
        "request": "pull request",
        "summary": "the job summary",
        "approval": "the `production` environment's required reviewers",
        "pinning": "Its actions are pinned by commit, its token is read-only.",
    },
    "gitlab": {
        "name": "GitLab CI",
        "settings": "CI/CD variables (Protected and Masked)",
        "request": "merge request",
        "summary": "the job's log and the merge request's metrics widget",
        "approval": "a manual job (protect the `production` environment to choose who runs it)",
        "pinning": "Its images are pinned by full release; no credential is in the file.",
    },
}


def ci_context(provider: str) -> dict[str, str]:
    """The GUIDE's words for ``provider``, and its file for each CI capability (``ci``,
    ``train``, ``deploy``, ``monitor``)."""
    words = dict(CI_WORDS.get(provider, {}))
    names = {"has_ci": "ci", "has_training_workflow": "train", "has_cd": "deploy",
             "has_monitoring_workflow": "monitor"}  # fmt: skip
    for cap in CAPABILITIES:
        if cap.name in names and provider in cap.ci:
            words[names[cap.name]] = cap.ci[provider][0]
    return words


def capabilities_at(level: int) -> dict[str, bool]:
    """Every capability name, true where ``level`` has it."""
    return {cap.name: level >= cap.level for cap in CAPABILITIES}


def ladder_json() -> str:
    """The ladder (levels and capabilities, not the level chosen), for ``.ladder.json``:
    what ``make maturity`` reads. The same at every level, so a climb does not change it."""
    levels = [
        {key: value for key, value in asdict(level).items() if key != "built"} for level in LEVELS
    ]
    capabilities = [asdict(cap) for cap in CAPABILITIES]
    return json.dumps({"levels": levels, "capabilities": capabilities}, indent=2) + "\n"


def level_context(level: int) -> dict[str, Any]:
    """What the hook adds to Copier's context for one level."""
    known = 0 <= level < len(LEVELS)
    return {
        **capabilities_at(level),
        "level_name": LEVELS[level].name if known else "",
        "level_summary": LEVELS[level].summary if known else "",
        "next_level": LEVELS[level + 1] if known and level + 1 < len(LEVELS) else None,
        "next_capabilities": [cap.name for cap in CAPABILITIES if cap.level == level + 1],
        "ladder_json": ladder_json(),
    }


class ContextUpdater(ContextHook):
    """Adds the capability names, the dataset record and the base image to the context."""

    def hook(self, context: dict[str, Any]) -> None:
        # Copier validates the answer against the choices itself; until it has, an
        # unknown level must not crash the hook (it runs while questions are asked).
        try:
            level = int(context.get("maturity_level", 0))
        except (TypeError, ValueError):
            level = -1
        context.update(level_context(level))
        by_name = {dataset.name: dataset for dataset in DATASETS}
        dataset = by_name.get(str(context.get("dataset")))
        context["dataset_info"] = dataset
        context["own_data"] = context.get("dataset") == OWN_DATA
        # The bundled dataset's contract, rendered as data/contract.yaml (none for own data:
        # the project's `make contract` writes it from the user's file).
        shipped = dataset.contract_file if dataset else None
        context["dataset_contract"] = (
            shipped.read_text(encoding="utf-8") if shipped and shipped.is_file() else ""
        )
        context["base_image"] = BASE_IMAGES.get(str(context.get("python_version")), "")
        context["ci"] = ci_context(str(context.get("ci_provider") or "github"))
